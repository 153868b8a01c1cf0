"""Chapters 2-3: are ODENets (and TisODE) more robust than CNNs? The survey's Table I, after Yan et al. (ICLR 2020).

One module per concern: ``config`` (the profile's section, checked once), ``run`` (compute into the
results store;
the run plan's units), ``tables`` (rows from results files), ``figures``, ``findings`` (prose from results files);
``authors`` reads Yan et al.'s own trained MNIST models (legacy checkpoints, never unpickled) and makes them run-plan
units evaluated with ``run``'s stages (evidence for Table I); ``readout`` reads the ODE models' decisions out
later than their read-out time (chapter 3).
"""

from robustode.chapters.robustness import authors, config, figures, findings, readout, run, tables

__all__ = ["authors", "config", "figures", "findings", "readout", "run", "tables"]
