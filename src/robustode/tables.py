"""Markdown tables for notebook outputs (rendered by myst-nb), built from rows of results."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "*(no rows)*"
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines)


def flag(ok: bool, text: str) -> str:
    """A check result: a failed check is shown in red, never hidden."""
    return text if ok else f'<span style="color:#c00;font-weight:bold">FAILED: {text}</span>'
