"""Chapter 5: ANODEs at image scale, NODE instability, and the memory cost of the adjoint (Dupont et al. 2019).

One module per concern: ``config`` (the profile's section, checked once), ``run`` (compute into the
results store;
the run plan's units), ``memory`` (memory and compute measurements), ``tables`` (rows from results files), ``figures``.
"""

from robustode.chapters.anode import config, figures, findings, memory, run, tables

__all__ = ["config", "figures", "findings", "memory", "run", "tables"]
