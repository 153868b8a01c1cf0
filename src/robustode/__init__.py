"""robustode: executable companion to a survey of Neural ODEs, ANODEs and TisODE.

The public surface is small: an ODE block on top of torchdiffeq, vector fields, models,
experiments that take a profile and write results files, and helpers that turn those files
into the book's tables and figures.
"""

from robustode.core.odeblock import ODEBlock, SolverFailure
from robustode.profiles import load_profile

__all__ = ["ODEBlock", "SolverFailure", "load_profile", "__version__"]
__version__ = "0.1.0"
