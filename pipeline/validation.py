"""Checks on user input: each failure is a :class:`BadInput` naming the bad value."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterable

from pipeline.artifacts.rundir import check_run_id

MAX_ALPHAS = 10_000
"""Most alphas one sweep takes (each alpha is two tasks and one cleanup)."""

MIN_SAMPLES, MAX_SAMPLES = 10, 10_000_000
"""Bounds of ``--n-samples`` (the split needs a few rows on each side)."""

MAX_RETRIES = 100
"""Most retries a stage may ask for."""

LABEL_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
"""A label is a queue name: letters, digits, ``_ . -``."""


class BadInput(ValueError):
    """Input the CLI refuses; the message names the value."""


def parse_alphas(tokens: Iterable[str]) -> list[float]:
    """Parse alphas given as separate words, comma-separated, or both; refuse bad ones."""
    words = [w for token in tokens for w in re.split(r"[,\s]+", str(token)) if w]
    if not words:
        raise BadInput("no alphas given: pass at least one, e.g. --alphas 1.0 0.1")
    if len(words) > MAX_ALPHAS:
        raise BadInput(f"{len(words)} alphas given: at most {MAX_ALPHAS} are accepted")
    alphas: list[float] = []
    seen: dict[float, str] = {}
    for word in words:
        try:
            value = float(word)
        except ValueError:
            raise BadInput(f"alpha {word!r} is not a number") from None
        if math.isnan(value) or math.isinf(value):
            raise BadInput(f"alpha {word} is not a finite number")
        if value < 0:
            raise BadInput(f"alpha {word} is negative: alphas must be >= 0")
        if value in seen:
            raise BadInput(f"alpha {word} is given twice (same as {seen[value]})")
        seen[value] = word
        alphas.append(value)
    return alphas


def check_seconds(name: str, value: float, limit: float | None = None) -> float:
    """A non-negative, finite number of seconds, below ``limit`` if given."""
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise BadInput(f"{name} {value} is not a non-negative number of seconds")
    if limit is not None and value >= limit:
        raise BadInput(
            f"{name} {value} is not below the visibility timeout ({limit:g} s, PIPELINE_VISIBILITY_TIMEOUT)"
        )
    return value


def check_rate(value: float) -> float:
    """A probability in 0..1."""
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise BadInput(f"fail rate {value} is outside 0..1")
    return value


def check_samples(value: int) -> int:
    """A dataset size the split can work with."""
    if not MIN_SAMPLES <= value <= MAX_SAMPLES:
        raise BadInput(f"n-samples {value} is outside {MIN_SAMPLES}..{MAX_SAMPLES}")
    return value


def check_retries(value: int) -> int:
    """A retry count in 0..MAX_RETRIES."""
    if not 0 <= value <= MAX_RETRIES:
        raise BadInput(f"retries {value} is outside 0..{MAX_RETRIES}")
    return value


def check_label(label: str) -> str:
    """A label usable as a queue name."""
    if not LABEL_PATTERN.match(label):
        raise BadInput(f"label {label!r} is not a valid queue name ({LABEL_PATTERN.pattern})")
    return label


def check_run_id_input(run_id: str) -> str:
    """A well-formed run id, as BadInput when malformed."""
    try:
        return check_run_id(run_id)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def check_artifacts_root(root: str | Path, allowed: Iterable[str | Path] = ()) -> str:
    """The artifacts root as run records store it (a resolved path or a URL).

    BadInput for a URL fsspec cannot use, and, when ``allowed`` roots are set
    (PIPELINE_ARTIFACTS_ALLOWED), for a root outside all of them.
    """
    from pipeline.artifacts.store import normalize_root

    try:
        normalized = normalize_root(root)
        allowed_roots = [normalize_root(a) for a in allowed]
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if allowed_roots and not any(normalized == a or normalized.startswith(a.rstrip("/") + "/") for a in allowed_roots):
        shown = ", ".join(allowed_roots)
        raise BadInput(f"artifacts root {str(root)!r} is outside the allowed roots ({shown})")
    return normalized


def check_run_options(*, n_samples: int, sleep: float, retries: int, retry_delay: float, fail_rate: float,
                      label: str | None, artifacts: str | None, settings) -> str:
    """Check a run's options as ``run``/``sweep`` take them; return the artifacts root to record.

    The CLI and the web's Run form both call this, so they refuse the same values with the
    same line. ``artifacts`` None: ``settings.artifacts_root``.
    """
    check_samples(n_samples)
    check_seconds("sleep", sleep, settings.visibility_timeout)
    check_seconds("retry delay", retry_delay, settings.visibility_timeout)
    check_retries(retries)
    check_rate(fail_rate)
    if label is not None:
        check_label(label)
    return check_artifacts_root(artifacts or settings.artifacts_root, settings.artifacts_allowed)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


def parse_duration(name: str, text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``12h``, ``7d`` or ``2w``; BadInput naming ``name`` otherwise."""
    match = _DURATION.match(str(text))
    if not match:
        raise BadInput(f"{name} {text!r} is not a duration: a number with s, m, h, d or w (e.g. 7d)")
    return float(match[1]) * _DURATION_UNITS[match[2].lower()]


def parse_size(name: str, text: str) -> int:
    """Bytes from ``1000``, ``500k``, ``200M``, ``2G``, ``2GiB`` (powers of 1024); BadInput otherwise."""
    match = _SIZE.match(str(text))
    if not match:
        raise BadInput(f"{name} {text!r} is not a size: a number with k, M, G or T (e.g. 2G)")
    return int(float(match[1]) * _SIZE_UNITS[match[2].lower()])


def cache_mode(use: bool, refresh: bool, local: bool = False) -> str:
    """The run's cache mode from ``--cache`` / ``--refresh-cache`` (see ``CACHE_MODES`` in settings)."""
    if use and refresh:
        raise BadInput("--cache and --refresh-cache exclude each other: --cache reuses stored results, "
                       "--refresh-cache recomputes them")
    if (use or refresh) and local:
        raise BadInput("--local does not use the cache: leave out --local, or --cache/--refresh-cache")
    return "refresh" if refresh else "on" if use else "off"


def restart_overrides(fail_rate: float | None, retries: int | None, retry_delay: float | None,
                      visibility_timeout: float, refresh_cache: bool = False) -> dict:
    """The parameters ``restart`` was asked to change, validated as ``sweep`` validates them."""
    overrides: dict = {"cache": "refresh"} if refresh_cache else {}
    if fail_rate is not None:
        overrides["fail_rate"] = check_rate(fail_rate)
    if retries is not None:
        overrides["retries"] = check_retries(retries)
    if retry_delay is not None:
        overrides["retry_delay"] = check_seconds("retry delay", retry_delay, visibility_timeout)
    return overrides
