"""pytest settings for the chapters under nbval (``make test``)."""

from nbval.plugin import IPyNbCell

OUTPUT_TIMEOUT_S = 60
"""Seconds nbval waits for each of a cell's output messages once the kernel has replied. nbval fixes this at 5 s and
offers no option for it (computationalmodelling/nbval issues #136 and #231); on a busy 2-core CI machine a cell's
last messages can come later than that, and a cell that ran fine then fails with "Timeout of 5 seconds exceeded
waiting for output" (seen once, in 01_topology's flip cell, on 2026-12-03). A cell that runs too long is still
stopped by ``--nbval-cell-timeout``."""


def pytest_collection_modifyitems(items):
    for item in items:
        if isinstance(item, IPyNbCell):
            item.output_timeout = OUTPUT_TIMEOUT_S
