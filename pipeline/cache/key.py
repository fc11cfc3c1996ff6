"""Cache keys: a hash of everything a stage's result depends on, or nothing at all.

The key of a stage hashes, as canonical JSON: the stage's name, its parameters (alpha,
rows, seed or tick; never ``--sleep``, ``--fail-rate`` or the run id), the name and sha256
of every input file it reads (as its writer recorded it), the digest of the code that computes it (the flow
definition and its helpers, :data:`CODE_FILES`) and the versions of Python, numpy,
scikit-learn and joblib. Any part that cannot be had raises :class:`KeyUnavailable`: the
stage then runs and nothing is stored (fail closed).
"""
from __future__ import annotations

import hashlib
import json
import platform
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from pipeline.ledger.versions import DEFINITION_FILES, definition_digest

KEY_FORMAT = 1
"""Version of the key's layout: a change of what goes into keys bumps it (every old entry misses)."""

PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""The ``pipeline`` package of this installation."""

CODE_FILES = (
    *(f"definition/{name}" for name in DEFINITION_FILES),
    "worker/tasks.py",  # how a task's parameters and inputs become the stage's arguments
    "artifacts/rundir.py", "artifacts/integrity.py", "artifacts/store.py",  # how files are read and written
    "cache/key.py", "cache/stages.py", "cache/store.py",  # what is keyed, served and stored
)
"""Files (under :data:`PACKAGE_DIR`) whose code a cached result depends on; docstrings,
comments and layout do not count (the flow version's digest, widened to the stages' helpers)."""

LIBRARIES = ("numpy", "sklearn", "joblib")
"""Packages whose version is part of every key."""


class KeyUnavailable(Exception):
    """A part of a stage's key could not be computed: run the stage, store nothing."""


_lock = threading.Lock()


@lru_cache(maxsize=1)
def _code_digest() -> str:
    try:
        return definition_digest([(PACKAGE_DIR / name).read_text() for name in CODE_FILES])
    except (OSError, SyntaxError, ValueError) as exc:
        raise KeyUnavailable(f"code digest: {exc}") from exc


def code_digest() -> str:
    """Digest of :data:`CODE_FILES` in this installation (once per process, under a lock:
    concurrent ``ast.parse`` fails on CPython 3.11)."""
    with _lock:
        return _code_digest()


@lru_cache(maxsize=1)
def library_versions() -> tuple[tuple[str, str], ...]:
    """``(name, version)`` of Python and of each of :data:`LIBRARIES`; KeyUnavailable if one is unknown."""
    import importlib

    found = [("python", platform.python_version())]
    for name in LIBRARIES:
        try:
            version = importlib.import_module(name).__version__
        except (ImportError, AttributeError) as exc:
            raise KeyUnavailable(f"version of {name}: {exc}") from exc
        if not isinstance(version, str) or not version:
            raise KeyUnavailable(f"version of {name}: {version!r}")
        found.append((name, version))
    return tuple(found)


def stage_key(stage: str, params: dict[str, Any], inputs: Iterable[tuple[str, str]]) -> str:
    """The cache key (64 hex digits) of ``stage`` with ``params`` reading ``inputs``
    (``(file name, sha256)`` pairs, in the order the stage reads them)."""
    document = {
        "format": KEY_FORMAT,
        "stage": stage,
        "params": params,
        "inputs": [[name, sha] for name, sha in inputs],
        "code": code_digest(),
        "libraries": dict(library_versions()),
    }
    try:
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:  # a parameter that has no exact JSON form
        raise KeyUnavailable(f"parameters of {stage}: {exc}") from exc
    return hashlib.sha256(text.encode()).hexdigest()
