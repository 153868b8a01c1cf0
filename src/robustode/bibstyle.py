"""Sphinx extension: the bibliography labelled the way the text cites, "Yan et al., 2020" instead of "[YDTF20]".

The book cites author-year (``bibtex_reference_style: author_year``); sphinxcontrib-bibtex's default
style labels the bibliography alphabetically, so the reader cannot match one to the other. This
registers a pybtex label style (``authoryear``) and a formatting style of the same name (``unsrt``
with those labels, sorted by author and year), selected in ``_config.yml`` with
``bibtex_default_style: authoryear``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle

NAME = "authoryear"


def _surname(person: Any) -> str:
    return Text.from_latex(" ".join([*person.prelast_names, *person.last_names])).render_as("text")


def author_year(entry: Any) -> str:
    """"Chen et al., 2018", "Carlini and Wagner, 2017", "Krizhevsky, 2009" (editors when no author)."""
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    year = entry.fields.get("year", "n.d.")
    if not people:
        who = Text.from_latex(entry.fields.get("organization") or entry.fields.get("title", entry.key)).render_as("text")
    elif len(people) == 1:
        who = _surname(people[0])
    elif len(people) == 2:
        who = f"{_surname(people[0])} and {_surname(people[1])}"
    else:
        who = f"{_surname(people[0])} et al."
    return f"{who}, {year}"


class AuthorYearLabels(BaseLabelStyle):
    """Author-year labels; equal ones get a, b, c after the year."""

    def format_labels(self, sorted_entries: Iterable[Any]) -> Iterator[str]:
        entries = list(sorted_entries)
        labels = [author_year(e) for e in entries]
        repeated = {label for label, count in Counter(labels).items() if count > 1}
        seen: Counter[str] = Counter()
        for label in labels:
            if label in repeated:
                yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label]]
                seen[label] += 1
            else:
                yield label


class AuthorYearStyle(UnsrtStyle):
    default_label_style = NAME
    default_sorting_style = "author_year_title"


def register() -> None:
    for kind, plugin in (("pybtex.style.labels", AuthorYearLabels), ("pybtex.style.formatting", AuthorYearStyle)):
        register_plugin(kind, NAME, plugin, force=True)


def setup(app: Any) -> dict:
    register()
    return {"parallel_read_safe": True, "parallel_write_safe": True}


__all__ = ["AuthorYearLabels", "AuthorYearStyle", "author_year", "register", "setup"]
