"""The flow's shape: its task keys and who depends on whom.

One source of truth for the canvas builder, the tasks (which inputs to read) and the
ledger (what becomes TriggerFailed when a task fails for good). Pure; no I/O.
"""
from __future__ import annotations

import re

FLOW_NAME = "sklearn_ridge_sweep"
"""Name every run records as its flow."""

DOWNLOAD = "download_dataset"
PREPROCESS = "preprocess_dataset"
TRAIN = "train_model"
EVALUATE = "evaluate_model"
CLEANUP = "cleanup_file"

STAGES = (DOWNLOAD, PREPROCESS, TRAIN, EVALUATE, CLEANUP)
"""Stage names in flow order."""

REFERENCE_STAGE = EVALUATE
"""The run's state follows the tasks of this stage."""

_KEY = re.compile(r"^(?P<stage>[a-z_]+)(?:\[(?P<index>\d+)\])?$")
"""A task key: its stage, then ``[index]`` for a stage with one task a branch or file."""


def key_prefix(stage: str) -> str:
    """What every indexed key of ``stage`` starts with: ``stage[``."""
    return f"{stage}["


def indexed_key(stage: str, i: int) -> str:
    """Key of the ``i``-th task of ``stage``: ``stage[i]``."""
    return f"{key_prefix(stage)}{i}]"


def stage_of(key: str) -> str:
    """The stage of a task key (the key itself for an unindexed one)."""
    return key.split("[", 1)[0]


def split_key(key: str) -> tuple[str, int | None] | None:
    """``(stage, index)`` of a key of the task-key form (index None when unindexed), else None.

    The flow's stages and bounds are not checked here (:func:`parse_key` does).
    """
    match = _KEY.match(key) if isinstance(key, str) else None
    if not match:
        return None
    return match["stage"], None if match["index"] is None else int(match["index"])


def train_key(i: int) -> str:
    """Key of the train task of branch ``i``."""
    return indexed_key(TRAIN, i)


def evaluate_key(i: int) -> str:
    """Key of the evaluate task of branch ``i``."""
    return indexed_key(EVALUATE, i)


def cleanup_key(j: int) -> str:
    """Key of the ``j``-th cleanup task."""
    return indexed_key(CLEANUP, j)


def n_cleanups(n_branches: int) -> int:
    """Intermediate files of a run: the dataset, one model a branch, train and test."""
    return n_branches + 3


def parse_key(key: str, n_branches: int) -> tuple[str, int | None]:
    """Split a task key into ``(stage, index)``; ValueError if it is not a key of this flow."""
    split = split_key(key)
    if split is None:
        raise ValueError(f"unknown task key {key!r}")
    stage, index = split
    if stage in (DOWNLOAD, PREPROCESS) and index is None:
        return stage, None
    if index is not None:
        limit = {TRAIN: n_branches, EVALUATE: n_branches, CLEANUP: n_cleanups(n_branches)}
        if stage in limit and index < limit[stage]:
            return stage, index
    raise ValueError(f"unknown task key {key!r}")


def task_keys(n_branches: int) -> list[str]:
    """Every task key of a run with ``n_branches`` alphas, in flow order."""
    keys = [DOWNLOAD, PREPROCESS]
    for i in range(n_branches):
        keys += [train_key(i), evaluate_key(i)]
    keys += [cleanup_key(j) for j in range(n_cleanups(n_branches))]
    return keys


def cleanup_source(j: int, n_branches: int) -> tuple[str, int | None]:
    """Which upstream output names cleanup ``j``'s file: ``(task key, index in output)``.

    The tutorial's order, ``flatten([[dataset], models, [train, test]])``.
    """
    if j == 0:
        return DOWNLOAD, None
    if 1 <= j <= n_branches:
        return train_key(j - 1), None
    if j == n_branches + 1:
        return PREPROCESS, 0
    if j == n_branches + 2:
        return PREPROCESS, 1
    raise ValueError(f"unknown task key {cleanup_key(j)!r}")


def upstream(key: str, n_branches: int) -> list[str]:
    """Tasks whose outputs ``key`` reads (its direct inputs)."""
    stage, i = parse_key(key, n_branches)
    if stage == DOWNLOAD:
        return []
    if stage == PREPROCESS:
        return [DOWNLOAD]
    if stage == TRAIN:
        return [PREPROCESS]
    if stage == EVALUATE:
        return [train_key(i), PREPROCESS]
    return [cleanup_source(i, n_branches)[0]]


def downstream(key: str, n_branches: int) -> list[str]:
    """Every task that cannot run once ``key`` has failed for good, in flow order."""
    stage, i = parse_key(key, n_branches)
    cleanups = [cleanup_key(j) for j in range(n_cleanups(n_branches))]
    if stage in (DOWNLOAD, PREPROCESS):
        return [k for k in task_keys(n_branches) if k not in (DOWNLOAD, key)]
    if stage == TRAIN:
        return [evaluate_key(i)] + cleanups
    if stage == EVALUATE:
        return cleanups
    return []
