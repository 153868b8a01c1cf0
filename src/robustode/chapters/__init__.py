"""The book's chapters, one package each: ``topology`` (1), ``robustness`` (2-3), ``attention`` (4), ``anode`` (5).

Each chapter package has ``config``, ``run`` (its run-plan units), ``tables`` and ``figures``; the notebooks
and the report read the same table definitions.
"""

CHAPTERS = ("topology", "robustness", "attention", "anode")
