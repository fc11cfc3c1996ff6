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
    n_branches: int = 0
    n_cleanups: int = 0

    @property
    def fold_branches(self) -> bool:
        return self.n_branches > FOLD_ABOVE

    @property
    def fold_cleanups(self) -> bool:
        return self.n_cleanups > FOLD_ABOVE

    @property
    def partial(self) -> bool:
        """True when folded stages hold only their notable children (see :func:`build`)."""
        return len(self.branches) < self.n_branches or len(self.cleanups) < self.n_cleanups


def alpha_label(alpha: Any) -> str:
    """An alpha as the files and results name it (``linear`` for the linear run)."""
    return "linear" if alpha is None else str(float(alpha))


QUIET = frozenset({TaskState.PENDING, TaskState.SUCCESS, TaskState.CACHED})
"""States of the children a folded stage leaves out unless asked for all."""

CHILD_CAP = 500
"""Most children of one folded stage kept unless asked for all."""


def _notable(children: list, state_of, show_all: bool, folded: bool) -> list:
    if show_all or not folded:
        return children
    return [c for c in children if state_of(c) not in QUIET][:CHILD_CAP]


def build(doc: dict[str, Any], show_all: bool = False) -> Schematic:
    """The schematic of the run described by ``doc`` (a ``status --json`` document).

    A folded stage (more than :data:`FOLD_ABOVE` children) keeps only its children not
    Pending or Success (at most :data:`CHILD_CAP`) unless ``show_all``: its counts say the
    rest, so a 2000-alpha run's page stays small.
    """
    by_key = {task["key"]: task for task in doc["tasks"]}
    alphas = (doc.get("params") or {}).get("alphas") or []
    branches = [Branch(i, alpha_label(a), by_key[flow.train_key(i)], by_key[flow.evaluate_key(i)])
                for i, a in enumerate(alphas)]
    cleanups = [by_key[flow.cleanup_key(j)] for j in range(flow.n_cleanups(len(alphas)))]
    return Schematic(
        download=by_key[flow.DOWNLOAD],
        preprocess=by_key[flow.PREPROCESS],
        branches=_notable(branches, lambda b: max(b.train["state"], b.evaluate["state"], key=_loud), show_all,
                          len(branches) > FOLD_ABOVE),
        cleanups=_notable(cleanups, lambda c: c["state"], show_all, len(cleanups) > FOLD_ABOVE),
        branch_counts={flow.TRAIN: Counter(b.train["state"] for b in branches),
                       flow.EVALUATE: Counter(b.evaluate["state"] for b in branches)},
        cleanup_counts=Counter(c["state"] for c in cleanups),
        n_branches=len(branches),
        n_cleanups=len(cleanups),
    )


def _loud(state: str) -> bool:
    """Orders a branch's two states so a notable one wins (used to pick the branch's state)."""
    return state not in QUIET


def alphas_by_key(doc: dict[str, Any]) -> dict[str, str]:
    """Task key -> its branch's alpha, for the train and evaluate tasks."""
    alphas = (doc.get("params") or {}).get("alphas") or []
    out = {}
    for i, alpha in enumerate(alphas):
        out[flow.train_key(i)] = out[flow.evaluate_key(i)] = alpha_label(alpha)
    return out
