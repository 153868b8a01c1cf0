"""Chapters 2-3: are ODENets (and TisODE) more robust than CNNs? The survey's Table I, after Yan et al. (ICLR 2020).

One module per concern: ``config`` (the profile's section, checked once), ``run`` (compute into the
results store;
the run plan's units), ``tables`` (rows from results files), ``figures``, ``findings`` (prose from results files).
"""

from robustode.chapters.robustness import config, figures, findings, run, tables

__all__ = ["config", "figures", "findings", "run", "tables"]
