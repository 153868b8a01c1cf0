"""Chapter 4: the survey's Neural ODE Attention against Classic Attention (its Sec. 7, Tables III-IV, Fig. 5).

One module per concern: ``config`` (the profile's section, checked once), ``run`` (compute into the
results store;
the run plan's units), ``audit`` (the parameter-count audit), ``tables`` (rows from results files),
``figures``, ``findings`` (prose from results files).
"""

from robustode.chapters.attention import audit, config, figures, findings, run, tables

__all__ = ["audit", "config", "figures", "findings", "run", "tables"]
