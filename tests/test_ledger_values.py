"""The ledger's names: states as str Enums stored byte-identically, keys named by position."""
from __future__ import annotations

import json
import re

from conftest import recorded_run
from pipeline.definition import flow
from pipeline.ledger import scripts
from pipeline.ledger.values import RunState, TaskState

STORED = {"Pending", "Running", "Retrying", "Success", "Cached", "Failed", "TriggerFailed", "Cancelled", "Unfinished"}
"""The state names runs already stored in Redis hold: they must never change."""


def test_states_are_the_stored_text():
    assert {s.value for s in TaskState} | {s.value for s in RunState} == STORED
    assert json.dumps({"state": TaskState.TRIGGER_FAILED}) == '{"state": "TriggerFailed"}'
    assert f"{RunState.CANCELLED}" == str(RunState.CANCELLED) == "Cancelled"


def test_lua_scripts_use_only_the_enum_values():
    lua = " ".join(v for k, v in vars(scripts).items() if k.isupper() and isinstance(v, str))
    quoted = set(re.findall(r"'([A-Z][a-z][A-Za-z]*)'", lua))
    assert quoted == STORED  # every state the scripts write or compare, and nothing else


def test_enum_states_reach_redis_as_plain_text(clean_redis):
    run = "20260101T000000Z-values"
    book = recorded_run(clean_redis.url, run, n_branches=1)
    key = flow.DOWNLOAD
    assert book.begin_task(run, key, task_id=f"id-{key}").verdict == "run"
    book.finish_task(run, key, TaskState.FAILED, error="boom", trigger_failed=flow.downstream(key, 1),
                     task_id=f"id-{key}")
    raw = clean_redis.client().hgetall(book.keys(run).states)
    assert raw[key] == "Failed" and set(raw.values()) == {"Failed", "TriggerFailed"}
    assert book.get_run(run)["state"] == RunState.FAILED


def test_run_keys_name_what_is_stored(clean_redis):
    run = "20260101T000000Z-keys"
    book = recorded_run(clean_redis.url, run, n_branches=1)
    key = flow.DOWNLOAD
    book.begin_task(run, key, task_id=f"id-{key}")
    book.append_log(run, key, "a line")
    book.finish_task(run, key, TaskState.SUCCESS, output={"file": "x"}, task_id=f"id-{key}")
    client = clean_redis.client()
    names = book.keys(run)
    layout = ("", ":state", ":attempts", ":started", ":ended", ":output", ":error", ":logs", ":celery", ":history",
              ":files", ":cache")
    assert list(names) == [f"pipeline:run:{run}{suffix}" for suffix in layout]  # as runs already stored
    assert client.hget(names.outputs, key) == json.dumps({"file": "x"})
    assert client.hget(names.attempts, key) == "1" and client.hget(names.task_ids, key) == f"id-{key}"
    assert client.type(names.logs) == "stream"
    stored = set(client.scan_iter(match=f"pipeline:run:{run}*"))
    assert stored <= set(names) and {names.run, names.states, names.outputs, names.logs} <= stored
