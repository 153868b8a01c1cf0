"""Chapter 1: the topology limits of Neural ODE flows, and ANODE lifting (Dupont et al. 2019, Sec. 4-5).

One module per concern: ``config`` (the profile's section, checked once), ``run`` (compute into the
results store;
the run plan's units), ``tables`` (rows from results files), ``figures``.
"""

from robustode.chapters.topology import config, figures, run, tables

__all__ = ["config", "figures", "run", "tables"]
