"""The run's schematic as data: download -> preprocess -> branches (train[i] -> evaluate[i]) -> cleanup[j].

Built from the ``status --json`` document (never from the ledger directly), so the page
shows exactly what the CLI reports. Mapped stages (the branches, the cleanups) come with
counts per state, and are folded into one node on the page when they have more than
:data:`FOLD_ABOVE` children; their children stay available to unfold.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pipeline.definition import flow
from pipeline.ledger.values import TaskState

FOLD_ABOVE = 8
"""A mapped stage with more children than this is shown folded (counts per state)."""

BLOCKED = TaskState.TRIGGER_FAILED
"""The state of a task that never ran because something upstream failed for good."""


@dataclass
class Branch:
    """One alpha's train -> evaluate pair."""

    index: int
    alpha: Any
    train: dict[str, Any]
    evaluate: dict[str, Any]


@dataclass
class Schematic:
    """What the page draws, in flow order."""

    download: dict[str, Any]
    preprocess: dict[str, Any]
    branches: list[Branch]
    cleanups: list[dict[str, Any]]
    branch_counts: dict[str, Counter] = field(default_factory=dict)
    cleanup_counts: Counter = field(default_factory=Counter)

    @property
    def fold_branches(self) -> bool:
        return len(self.branches) > FOLD_ABOVE

    @property
    def fold_cleanups(self) -> bool:
        return len(self.cleanups) > FOLD_ABOVE


def alpha_label(alpha: Any) -> str:
    """An alpha as the files and results name it (``linear`` for the linear run)."""
    return "linear" if alpha is None else str(float(alpha))


def build(doc: dict[str, Any]) -> Schematic:
    """The schematic of the run described by ``doc`` (a ``status --json`` document)."""
    by_key = {task["key"]: task for task in doc["tasks"]}
    alphas = (doc.get("params") or {}).get("alphas") or []
    branches = [Branch(i, alpha_label(a), by_key[flow.train_key(i)], by_key[flow.evaluate_key(i)])
                for i, a in enumerate(alphas)]
    cleanups = [by_key[flow.cleanup_key(j)] for j in range(flow.n_cleanups(len(alphas)))]
    return Schematic(
        download=by_key[flow.DOWNLOAD],
        preprocess=by_key[flow.PREPROCESS],
        branches=branches,
        cleanups=cleanups,
        branch_counts={flow.TRAIN: Counter(b.train["state"] for b in branches),
                       flow.EVALUATE: Counter(b.evaluate["state"] for b in branches)},
        cleanup_counts=Counter(c["state"] for c in cleanups),
    )


def alphas_by_key(doc: dict[str, Any]) -> dict[str, str]:
    """Task key -> its branch's alpha, for the train and evaluate tasks."""
    alphas = (doc.get("params") or {}).get("alphas") or []
    out = {}
    for i, alpha in enumerate(alphas):
        out[flow.train_key(i)] = out[flow.evaluate_key(i)] = alpha_label(alpha)
    return out
