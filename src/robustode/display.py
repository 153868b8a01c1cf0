"""Showing results in the notebooks: one display helper for tables, lists and notes, and the evidence tiers.

The book shows the best evidence first: for each table, the profiles that hold runs for it, strongest tier
first (``full``, then ``paper-short``, then ``quick``; :func:`robustode.profiles.tiers`), each under a caption
that names the profile, what it is worth, how many runs, where they ran and at which commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from robustode.profiles import evidence_tiers, tier
from robustode.store import Store
from robustode.wording import device_label, plural  # display.plural: the package's one plural, used by chapters


def _emit(markdown: str) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover - IPython is a dependency of the notebooks
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Markdown(markdown))
    else:
        print(markdown)


def show(content: list[dict] | list[str] | str, title: str | None = None, empty: str | None = None) -> None:
    """Display rows as a table, strings as a bulleted list, or a text as Markdown, under an optional bold
    ``title``; with nothing to show, the one italic line ``empty`` (when given) instead."""
    from robustode.tables import table_block

    parts = [f"**{title}**"] if title else []
    if not content:
        if empty is None:
            return
        parts.append(f"*{empty}*")
    elif isinstance(content, str):
        parts.append(content)
    elif isinstance(content[0], dict):
        parts.append(table_block(content))  # escaped cells, in a scroll container with a sticky key column
    else:
        parts.append("\n".join(f"* {line}" for line in content))
    _emit("\n\n".join(parts))


def evidence(experiments: Iterable[str], profile: str) -> list[Store]:
    """The stores to show for ``experiments``, strongest tier first: every profile holding runs of any of them,
    and this build's ``profile`` in its place whether it holds runs or not (:func:`robustode.profiles.evidence_tiers`:
    never another build's uncommitted quick results)."""
    wanted = list(experiments)
    stores = []
    for t in evidence_tiers(profile):
        store = Store(t.profile)
        if t.profile == profile or any(store.runs(e) for e in wanted):
            stores.append(store)
    return stores


def strongest(experiments: Iterable[str], profile: str) -> Store:
    """The strongest tier holding runs of ``experiments`` (a chapter's figures and findings come from it), or this
    build's ``profile`` when none holds any."""
    wanted = list(experiments)
    return next((s for s in evidence(wanted, profile) if any(s.runs(e) for e in wanted)), Store(profile))


def caption(store: Store, experiments: Iterable[str]) -> str:
    """Profile, what it is worth, how many runs, devices and commits (``+``: made from a tree with uncommitted
    changes), in one line."""
    experiments = list(experiments)
    runs = [r for e in experiments for r in store.runs(e)]
    going = sum(len(store.in_progress(e)) for e in experiments)
    what = f"profile `{store.profile}` — {tier(store.profile).label}"
    more = f"; {going} more in progress (the stages they finished are shown)" if going else ""
    if not runs:
        return what + more
    devices = sorted({device_label(r["provenance"]["device"]) for r in runs})
    commits = sorted({(r["provenance"].get("git_commit") or "?")[:7] + ("+" if r["provenance"].get("git_dirty") else "")
                      for r in runs})
    return f"{what}; {plural(len(runs), 'run')} on {'; '.join(devices)}; commit {', '.join(commits)}{more}"


def show_tiers(table: Callable[[Store], list[dict] | list[str]], experiments: Iterable[str], profile: str, title: str,
               empty: Callable[[Store], str] | None = None) -> None:
    """``table(store)`` for each store of :func:`evidence`, strongest first, each titled with its caption; a store
    without rows shows ``empty(store)`` (one line) instead."""
    wanted = list(experiments)
    for store in evidence(wanted, profile):
        show(table(store), f"{title} — {caption(store, wanted)}", empty(store) if empty else "no runs")
