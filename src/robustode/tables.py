"""Tables for notebook outputs and the command line, built from rows of results by one helper.

Cell text is *text*: :func:`markdown_table` escapes every character Markdown or MyST would read as
syntax (a ``|`` that would split a cell, a ``$`` that would open maths, ``*`` and ``_`` emphasis,
backticks, links, raw HTML), so a header such as ``mean |f| at t=0`` stays one header. Cells that
are meant as markup say so with their type: :class:`Markdown` (kept as written, e.g. a red
:func:`flag` or a link) and :class:`Maths` (rendered as maths; build it with :func:`maths`).

:func:`table_block` is what the book shows (``robustode.display.show`` uses it): a title, the table
inside a horizontally scrollable container (its first column stays in view while the rest scrolls;
``_static/robustode.css``), and optional detail columns in a collapsed section below. The wrappers
are HTML blocks, which MyST (and Jupyter's own Markdown renderer) pass through, with blank lines
around the table so that it is still parsed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

SCROLL_CLASS = "robustode-table"
# Markdown punctuation that changes meaning inside a table cell.
_SPECIAL = re.compile(r"([\\`*\[\]<>$|~])")
# ``_`` only delimits emphasis at a word boundary: ``gaussian_sigma_100`` keeps its underscores.
_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_ENTITY = re.compile(r"&(?=#?\w+;)")


class Markdown(str):
    """Cell text that already is Markdown (emphasis, a link, a coloured span): not escaped.

    Only a ``|`` is escaped, as a table needs; compose with ``Markdown(...)`` again, since an
    f-string or ``+`` gives back a plain (escaped) ``str``.
    """


class Maths(Markdown):
    """Inline maths, ``$...$``; build it with :func:`maths`."""


def maths(tex: str) -> Maths:
    """Inline TeX as a table cell or a Markdown fragment: ``maths(r"\\sum_i \\lvert x_i \\rvert")``.

    ``|`` would end a table cell even inside ``$...$``, so it is written ``\\vert`` here.
    """
    tex = tex.replace("\\|", "\\Vert ").replace("|", "\\vert ").strip()
    if not tex:
        raise ValueError("maths() needs a formula")
    return Maths(f"${tex}$")


def escape(text: object) -> str:
    """``text`` as literal Markdown text (one line): Markdown cells are kept, everything else escaped."""
    if text is None:
        return "—"
    if isinstance(text, Markdown):
        return " ".join(str(text).split("\n")).replace("|", "\\|") if not isinstance(text, Maths) else str(text)
    text = " ".join(str(text).splitlines())
    text = _SPECIAL.sub(r"\\\1", text)
    text = _UNDERSCORE.sub(r"\\_", text)
    return _ENTITY.sub(r"\\&", text)


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A pipe table of ``rows``; headers and cells escaped (see :func:`escape`); ``None`` shows as —."""
    if not rows:
        return "*(no rows)*"
    # Every key in order of first appearance: a "not run" row may bring a column the others lack.
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(escape(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(escape(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def table_block(rows: Sequence[dict], columns: Sequence[str] | None = None, title: str | None = None,
                details: Sequence[str] | None = None, key: Sequence[str] | None = None,
                details_title: str = "more columns") -> str:
    """Markdown for a book page: ``title`` (bold), the table in a scroll container, details collapsed.

    ``columns``: the columns shown (default: every column not in ``details``). ``details``: columns
    moved into a collapsed section, each detail row repeating the ``key`` columns (default: the
    first shown column) so that it can be read on its own.
    """
    all_columns = list(dict.fromkeys(k for row in rows for k in row))
    details = [c for c in (details or []) if c in all_columns]
    shown = list(columns) if columns else [c for c in all_columns if c not in details]
    parts = []
    if title:
        parts.append(f"**{escape(title)}**")
    parts.append(_scroll(markdown_table(rows, shown)))
    if rows and details:
        key = list(key) if key else shown[:1]
        parts.append(f"<details class=\"{SCROLL_CLASS}-details\"><summary>{_html(details_title)}</summary>\n\n"
                     + _scroll(markdown_table(rows, key + [c for c in details if c not in key])) + "\n\n</details>")
    return "\n\n".join(parts)


def settings_rows(settings: dict, skip: Sequence[str] = ()) -> list[dict]:
    """A settings dict as table rows ("setting", "value"): for :func:`show` instead of printing the dict."""
    return [{"setting": key.replace("_", " "), "value": ", ".join(map(str, v)) if isinstance(v, list | tuple) else v}
            for key, v in settings.items() if key not in skip]


def _scroll(table: str) -> str:
    return f'<div class="{SCROLL_CLASS}">\n\n{table}\n\n</div>'


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def flag(ok: bool, text: str) -> Markdown:
    """A check result: a failed check is shown in red, never hidden."""
    return Markdown(escape(text) if ok else f'<span style="color:#c00;font-weight:bold">FAILED: {_html(text)}</span>')
