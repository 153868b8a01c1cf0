"""Markdown tables for notebook outputs (rendered by myst-nb), built from rows of results."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "*(no rows)*"
    # Every key in order of first appearance: a "not run" row may bring a column the others lack.
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines)


def flag(ok: bool, text: str) -> str:
    """A check result: a failed check is shown in red, never hidden."""
    return text if ok else f'<span style="color:#c00;font-weight:bold">FAILED: {text}</span>'
