"""What each stage reads and writes, as the cache sees it; and a task's stage run through the cache.

:func:`run_cached` is what a worker's task calls around its stage: with the run's
``cache`` parameter ``on`` it serves a stored entry whose key matches (the files are
written into the run's directory as if computed, so every later task and the cleanup
see them as usual), else it computes; ``on`` and ``refresh`` then store the result.
``off`` (the default) changes nothing. Cleanup is never cached. A cache that cannot be
read or written is said in the task's log and otherwise ignored: it never fails a run.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

from pipeline.artifacts.rundir import RunDir
from pipeline.cache.key import KeyUnavailable, stage_key
from pipeline.cache.store import CacheMiss, CacheStore, Entry
from pipeline.definition import flow
from pipeline.definition.naming import alpha_name

CACHEABLE = (flow.DOWNLOAD, flow.PREPROCESS, flow.TRAIN, flow.EVALUATE)
"""Stages whose results are cached (a cleanup only removes a file)."""


def key_params(stage: str, params: dict, index: int | None) -> dict[str, Any]:
    """The parameters ``stage``'s result depends on (never sleep, fail rate, retries or the run id)."""
    if stage == flow.DOWNLOAD:
        return {"n_samples": int(params["n_samples"]), "tick": params.get("tick")}  # the tick is the seed
    if stage == flow.TRAIN:
        alpha = params["alphas"][index]
        return {"alpha": None if alpha is None else alpha_name(alpha)}
    return {}


def input_names(stage: str, inputs: dict[str, Any], index: int | None) -> list[str]:
    """The files ``stage`` reads, in order, from its upstream tasks' outputs."""
    if stage == flow.PREPROCESS:
        return [inputs[flow.DOWNLOAD]]
    if stage == flow.TRAIN:
        return [inputs[flow.PREPROCESS][0]]
    if stage == flow.EVALUATE:
        return [inputs[flow.train_key(index)], inputs[flow.PREPROCESS][1]]
    return []


def output_names(stage: str, output: Any) -> list[str]:
    """The files ``stage`` wrote, from its output."""
    if stage == flow.PREPROCESS:
        return list(output)
    if stage == flow.EVALUATE:
        return [output["file"]]
    return [output]


@dataclass(frozen=True)
class Plan:
    """A task's way through the cache: its key, the store, and whether a hit may be served."""

    store: CacheStore
    key: str
    stage: str
    serve: bool


def plan(run_dir: RunDir, stage: str, params: dict, index: int | None, inputs: dict) -> Plan | None:
    """The cache plan of one task, or None when the run does not use the cache, the stage is not
    cached, or a part of its key cannot be had (then nothing is stored: fail closed).

    The sha256 of each input file is the one its writer recorded with the file (the content
    the stage would read: a reader checks the file against it); a file without a record is
    read whole and hashed."""
    mode = params.get("cache") or "off"
    if mode == "off" or stage not in CACHEABLE:
        return None
    pairs = [(name, input_digest(run_dir, name)) for name in input_names(stage, inputs, index)]
    try:
        key = stage_key(stage, key_params(stage, params, index), pairs)
    except KeyUnavailable as exc:
        print(f"cache not used: {exc}")
        return None
    return Plan(CacheStore(run_dir.root), key, stage, serve=mode == "on")


def input_digest(run_dir: RunDir, name: str) -> str:
    """The sha256 of input file ``name``: its writer's record, else the file's content."""
    recorded = run_dir.book.expected(name) if run_dir.book is not None else None
    if recorded is not None:
        return recorded.sha256
    with run_dir.reader(name) as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def serve(found: Plan, run_dir: RunDir) -> Entry | None:
    """Write the files of ``found``'s entry into the run's directory and return the entry, or
    None on a miss (its reason printed)."""
    try:
        entry, contents = found.store.get(found.key)
        if entry.stage != found.stage:
            raise CacheMiss(f"entry {found.key[:12]} is of stage {entry.stage}")
    except CacheMiss as miss:
        print(f"cache miss: {miss}")
        return None
    except Exception as exc:  # noqa: BLE001 (an unreachable store is a miss, never a failure)
        print(f"cache miss: the store at {found.store.location} could not be read ({type(exc).__name__}: {exc})")
        return None
    for name, data in contents.items():
        with run_dir.atomic(name) as out:
            out.write(data)
    print(f"cache hit: key {found.key[:12]}, stored by {entry.task} of run {entry.run_id}")
    return entry


def keep(found: Plan, run_dir: RunDir, output: Any) -> None:
    """Store ``output`` and the files it names under ``found``'s key; a failure is printed, not raised."""
    try:
        contents, files = {}, {}
        for name in output_names(found.stage, output):
            with run_dir.reader(name) as handle:
                data = handle.read()
            files[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            contents[name] = data
        found.store.put(Entry(found.key, found.stage, output, files, run_dir.run_id, run_dir.task), contents)
    except Exception as exc:  # noqa: BLE001 (a result not stored is a later miss, never a failure)
        print(f"cache: result not stored ({type(exc).__name__}: {exc})")
        return
    print(f"cache: stored as key {found.key[:12]}")


def run_cached(run_dir: RunDir, key: str, params: dict, index: int | None, inputs: dict,
               compute: Callable[[], Any]) -> tuple[Any, Entry | None]:
    """``compute()`` for task ``key`` through the cache as the run's parameters ask: returns its
    output and the entry it came from (None when computed)."""
    stage = flow.stage_of(key)
    found = plan(run_dir, stage, params, index, inputs)
    if found is None:
        return compute(), None
    if found.serve:
        entry = serve(found, run_dir)
        if entry is not None:
            return entry.output, entry
    output = compute()
    keep(found, run_dir, output)
    return output, None
