"""Names and numbers of the tutorial's files and seeds: light, importable without scikit-learn."""
from __future__ import annotations

from datetime import datetime

MANUAL_SEED = 17
"""Seed of every manual run (the tutorial's)."""

DEFAULT_N_SAMPLES = 100
"""Rows in the generated dataset unless ``--n-samples`` says otherwise."""


def alpha_name(alpha: float | None) -> str:
    """The alpha as it appears in file names and results: ``str(float(alpha))``."""
    return "linear" if alpha is None else str(float(alpha))


def tick_stamp(tick: datetime) -> str:
    """A tick time as it appears in scheduled file names: ``YYYYMMDDHHmmss``."""
    return tick.strftime("%Y%m%d%H%M%S")


def tick_seed(tick: datetime) -> int:
    """The dataset seed of a scheduled run: the tick's POSIX timestamp."""
    return int(tick.timestamp())
