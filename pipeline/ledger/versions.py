"""Flow versions: a number that grows when the pipeline's definition changes, and only then.

The definition is the parsed code (AST, so comments and formatting do not count) of the
stages (with the names they give files), the flow's shape and the canvas builder. Each
new digest gets the next number in Redis, with the time it was first seen; each run
records its number.
"""
from __future__ import annotations

import ast
import hashlib
import json
import threading
import time
from functools import lru_cache
from pathlib import Path

import redis

from pipeline.settings import KEY_PREFIX

DEFINITION_FILES = ("stages.py", "naming.py", "flow.py", "canvas.py")
"""Modules of :mod:`pipeline.definition` whose code is the pipeline's definition."""

_REGISTER = """
local known = redis.call('HGET', KEYS[1], ARGV[1])
if known then return known end
local version = redis.call('INCR', KEYS[2])
local record = cjson.encode({version = version, first_seen = tonumber(ARGV[2]), digest = ARGV[1]})
redis.call('HSET', KEYS[1], ARGV[1], record)
return record
"""


class _DropDocstrings(ast.NodeTransformer):
    """Removes docstrings (and other bare string statements): documentation, not definition."""

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        body = getattr(node, "body", None)
        if isinstance(body, list):
            kept = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                            and isinstance(s.value.value, str))]
            node.body = kept or [ast.Pass()]
        return node


def definition_digest(sources: list[str]) -> str:
    """SHA-256 over the ASTs of ``sources``, docstrings left out.

    Equal for code that differs only in comments, layout or docstrings; different as soon
    as one statement, name or constant differs.
    """
    digest = hashlib.sha256()
    for source in sources:
        tree = _DropDocstrings().visit(ast.parse(source))
        digest.update(ast.dump(tree, annotate_fields=True, include_attributes=False).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def package_digest(package: Path) -> str:
    """Digest of the definition files (:data:`DEFINITION_FILES`) in directory ``package``."""
    return definition_digest([(package / name).read_text() for name in DEFINITION_FILES])


_digest_lock = threading.Lock()


DEFINITION_DIR = Path(__file__).resolve().parents[1] / "definition"
"""The folder of :data:`DEFINITION_FILES` in this installation."""


@lru_cache(maxsize=1)
def _current_digest() -> str:
    return package_digest(DEFINITION_DIR)


def current_digest() -> str:
    """Digest of this installation's pipeline definition.

    Computed once per process, under a lock: ``ast.parse`` in several threads at once can
    fail on CPython 3.11 ("AST constructor recursion depth mismatch"), and the first
    scheduled runs of a threads-pool worker may arrive together.
    """
    with _digest_lock:
        return _current_digest()


def register(client: redis.Redis, digest: str | None = None) -> dict:
    """The version record of ``digest`` (default: the current code), creating it if new."""
    digest = digest or current_digest()
    script = client.register_script(_REGISTER)
    raw = script(keys=[f"{KEY_PREFIX}:flows", f"{KEY_PREFIX}:flows:counter"], args=[digest, repr(time.time())])
    return json.loads(raw)


def version_of(client: redis.Redis, digest: str) -> int | None:
    """The number of flow version ``digest`` (None: never registered)."""
    raw = client.hget(f"{KEY_PREFIX}:flows", digest)
    return None if raw is None else int(json.loads(raw)["version"])


def version_name(version: int | None, digest: str) -> str:
    """How messages name a flow version: ``v3 (digest 1a2b3c4d5e6f)``."""
    return f"{'v' + str(version) if version else 'an unregistered version'} (digest {digest[:12]})"


def count_run(client: redis.Redis, version: int) -> None:
    """Count one more run of flow ``version``."""
    client.hincrby(f"{KEY_PREFIX}:flows:runs", str(version), 1)


def all_versions(client: redis.Redis) -> list[dict]:
    """Every version record, oldest first."""
    records = [json.loads(v) for v in client.hgetall(f"{KEY_PREFIX}:flows").values()]
    return sorted(records, key=lambda r: r["version"])


def version_table(client: redis.Redis, workers: dict[str, dict] | None = None) -> list[dict]:
    """Every version, oldest first: version, first_seen (unix), digest, runs, current, workers.

    ``runs`` counts the runs ever recorded with that version (expired and pruned ones
    included); ``current`` marks the version of the code this process runs; ``workers``
    names the live workers running it, from ``workers`` (name -> worker record, see
    :mod:`pipeline.ledger.workers`). A digest live workers run that no version has (its
    record was lost) gets a row of its own with version None.
    """
    counts = client.hgetall(f"{KEY_PREFIX}:flows:runs")
    mine = current_digest()
    by_digest: dict[str, list[str]] = {}
    for name, record in sorted((workers or {}).items()):
        by_digest.setdefault(record.get("digest") or "", []).append(name)
    table = [
        {**record, "runs": int(counts.get(str(record["version"]), 0)), "current": record["digest"] == mine,
         "workers": by_digest.pop(record["digest"], [])}
        for record in all_versions(client)
    ]
    return table + [{"version": None, "first_seen": None, "digest": digest, "runs": 0, "current": digest == mine,
                     "workers": names} for digest, names in by_digest.items()]


def version_documents(table: list[dict]) -> list[dict]:
    """``flows --json``'s array from :func:`version_table`'s rows (first seen as ISO-8601 UTC)."""
    from pipeline.ledger.values import iso

    return [{**v, "first_seen": iso(v["first_seen"])} for v in table]
