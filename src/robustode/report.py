"""The reproduction report: every number the survey prints, held against the best evidence our runs produced.

The printed numbers come from :func:`robustode.reference.printed_numbers`; each section's values come from
the chapter that reproduces it (its ``tables.report_values``, the same definitions the chapter's own tables
use), and every row is judged by :mod:`robustode.verdict`. By default a row takes the strongest tier that
holds runs for it (``full``, then ``paper-short``, then ``quick``); ``profile`` restricts it to one.
``python -m robustode report`` and the report chapter print the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from robustode.chapters import anode, attention, robustness
from robustode.data.images import DATA_MISSING
from robustode.profiles import evidence_tiers
from robustode.reference import Printed, printed_numbers
from robustode.store import Store
from robustode.verdict import Reproduced, judge, row, source_of
from robustode.wording import not_run, plural

# Which chapter reproduces each section of reference-values.yaml.
PROVIDERS: dict[str, Callable[[Printed, Store], Reproduced]] = {
    "table_1_robustness": robustness.tables.report_values,
    "authors_mnist_fgsm_runs": robustness.tables.report_values,
    "tisode_repo_parameters": robustness.tables.report_values,
    "table_3_ode_attention": attention.tables.report_values,
    "table_4_parameters": attention.tables.report_values,
    "anode_table_1": anode.tables.report_values,
    "anode_parameters": anode.tables.report_values,
}
SECTION_TITLES = {
    "table_1_robustness": "Table I (robustness)", "authors_mnist_fgsm_runs": "Yan et al.'s logged FGSM runs",
    "tisode_repo_parameters": "Yan et al.'s parameter counts", "table_3_ode_attention": "Table III (attention)",
    "table_4_parameters": "Table IV (attention parameters)", "anode_table_1": "ANODE Table 1 (Dupont et al.)",
    "anode_parameters": "ANODE parameter counts (Dupont et al.'s configs)",
}


def best_evidence(p: Printed, stores: list[Store]) -> Reproduced:
    """The values of the strongest store that has any for ``p``; else the reason the weakest-to-try gave."""
    found = None
    for store in stores:
        got = PROVIDERS[p.section](p, store)
        if got.values:
            return got
        found = found or got
    return found or Reproduced(reason="no profile to read")


def _stores(profile: str | None, build: str | None) -> list[Store]:
    return [Store(profile)] if profile else [Store(t.profile) for t in evidence_tiers(build)]


def report_rows(profile: str | None = None, build: str | None = None) -> list[dict]:
    """One row per printed number: section, source, printed, reproduced (n, profile, device), difference with its
    95 % interval, verdict. ``profile=None``: the best evidence over the profiles a build of ``build`` shows
    (:func:`robustode.profiles.evidence_tiers`; ``None``: all)."""
    stores = _stores(profile, build)
    rows = []
    for p in printed_numbers():
        got = best_evidence(p, stores)
        rows.append({"section": SECTION_TITLES[p.section], "source": source_of(p), **row(p, got)})
    return rows


def fold_missing_data(rows: list[dict]) -> tuple[list[dict], list[str]]:
    """One section's rows as the book shows them: every row with evidence or another reason, and instead of a row
    of "not run" for each number that waits on a data set not on disk, one line per data set saying how many
    numbers wait on it and how to add it. The command line and the JSON keep every row."""
    kept, waiting = [], {}
    prefix = not_run(DATA_MISSING)
    for r in rows:
        if r["verdict"].startswith(prefix):
            reason = r["verdict"].removeprefix(f"{not_run()}:").strip()
            waiting[reason] = waiting.get(reason, 0) + 1
        else:
            kept.append(r)
    return kept, [f"{plural(n, 'printed number')} not run: {reason}" for reason, n in waiting.items()]


def book_sections(rows: list[dict]) -> list[tuple[str, list[dict], list[str]]]:
    """The report's rows as the book shows them, section by section: ``(title, rows without the section column,
    one line per missing data set)`` (:func:`fold_missing_data`)."""
    return [(title, *fold_missing_data([{k: v for k, v in r.items() if k != "section"} for r in rows
                                        if r["section"] == title]))
            for title in SECTION_TITLES.values()]


def verdict_counts(profile: str | None = None, build: str | None = None) -> dict[str, int]:
    """How many printed numbers got each verdict word (the evidence of :func:`report_rows`)."""
    stores = _stores(profile, build)
    counts: dict[str, int] = {}
    for p in printed_numbers():
        word = judge(p, best_evidence(p, stores)).word
        counts[word] = counts.get(word, 0) + 1
    return counts


def render(rows: list[dict], fmt: str = "markdown") -> str:
    if fmt == "json":
        return json.dumps(rows, indent=1)
    from robustode.tables import markdown_table

    return markdown_table(rows)
