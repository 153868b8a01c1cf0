"""The numerics every chapter builds on, one concept per module: the ODE block (``odeblock``) and vector fields
(``dynamics``), attacks, noise and defences, the steady-state regulariser, the training loop and the GPU engine,
memory and timing measurements, evaluation helpers, and time budgets. Nothing here knows about chapters, profiles'
meaning or the book."""
