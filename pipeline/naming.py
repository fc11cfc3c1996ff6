"""How runs name things: alphas and tick times in file names, the default dataset size.

Kept free of numpy and scikit-learn so the CLI can name and submit runs without
importing them (they cost seconds to import); :mod:`pipeline.stages` re-exports these.
"""
from __future__ import annotations

from datetime import datetime

DEFAULT_N_SAMPLES = 100
"""Rows in the generated dataset unless ``--n-samples`` says otherwise."""


def alpha_name(alpha: float | None) -> str:
    """The alpha as it appears in file names and results: ``str(float(alpha))``."""
    return "linear" if alpha is None else str(float(alpha))


def tick_stamp(tick: datetime) -> str:
    """A tick time as it appears in scheduled file names: ``YYYYMMDDHHmmss``."""
    return tick.strftime("%Y%m%d%H%M%S")
