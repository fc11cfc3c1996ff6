"""Hostile input on the queue and at the CLI: rejected with a clear error, nothing left behind."""
from __future__ import annotations

import json
import pickle
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from kombu import Connection, Producer

from conftest import free_port, pipeline_env, poll, redis_binary, run_cli, start_worker, stop_process
from test_stages import tutorial_score


class _Touch:
    """Unpickling this creates the marker file: proof that a pickle was executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def publish_raw(url: str, body: bytes, content_type: str, task: str = "pipeline.download_dataset") -> None:
    headers = {"lang": "py", "task": task, "id": str(uuid.uuid4()), "root_id": None, "parent_id": None,
               "group": None, "retries": 0, "eta": None, "expires": None, "argsrepr": "()", "kwargsrepr": "{}"}
    with Connection(url) as conn:
        Producer(conn).publish(body, routing_key="default", exchange="", content_type=content_type,
                               content_encoding="binary" if isinstance(body, bytes) else "utf-8", headers=headers)


def task_body(run_id: str, key: str) -> bytes:
    """A well-formed JSON task message body (protocol 2) with kwargs ``run_id`` and ``key``."""
    return json.dumps([[], {"run_id": run_id, "key": key},
                       {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]).encode()


def publish_until_logged(url: str, worker, body: bytes, content_type: str, logged: str, what: str) -> None:
    """Publish ``body`` and wait until the worker's log holds one more ``logged`` than before."""
    before = worker.text().count(logged)
    publish_raw(url, body, content_type)
    poll(lambda: worker.text().count(logged) > before, what, 20)


def test_pickle_message_is_rejected_never_executed(cli_env, clean_redis, worker, tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(((), {"run_id": "x", "key": "download_dataset", "boom": _Touch(str(marker))}, {}))
    publish_until_logged(clean_redis.url, worker, payload, "application/x-python-serialize",
                         "Refusing to deserialize untrusted content", "the worker to log it")
    assert not marker.exists()
    assert clean_redis.client().llen("default") == 0  # rejected, not requeued forever
    ok = run_cli("run", "--json", env=cli_env)  # the worker is still healthy
    assert ok.returncode == 0 and json.loads(ok.stdout)["state"] == "Success"


def test_malformed_json_and_unknown_task_are_discarded(cli_env, clean_redis, worker):
    publish_raw(clean_redis.url, b"{not json", "application/json")
    publish_raw(clean_redis.url, task_body("r", "k"), "application/json", task="pipeline.no_such_task")
    poll(lambda: "pipeline.no_such_task" in worker.text(), "the worker to log it", 20)
    poll(lambda: clean_redis.client().llen("default") == 0, "the queue to drain", 20)
    assert clean_redis.client().keys("pipeline:run:*") == []
    ok = run_cli("run", "--alpha", "0.5", "--json", env=cli_env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["results"] == {"0.5": tutorial_score(17, 100, 0.5)}


def test_message_for_a_run_that_does_not_exist_does_nothing(cli_env, clean_redis, worker, tmp_path):
    publish_until_logged(clean_redis.url, worker, task_body("ghost", "download_dataset"), "application/json",
                         "not running download_dataset of run ghost", "the worker to log it")
    assert clean_redis.client().keys("pipeline:run:ghost*") == []


def test_hundred_thousand_alphas_refused(clean_redis, tmp_path):
    alphas = [str(i) for i in range(100_000)]
    result = run_cli("sweep", "--alphas", *alphas, env=pipeline_env(clean_redis.url,
                                                                  PIPELINE_ARTIFACTS=str(tmp_path / "a")))
    assert result.returncode == 2 and "100000 alphas" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert clean_redis.client().keys("pipeline:run*") == [] and not (tmp_path / "a").exists()


@pytest.mark.parametrize("url,named", [
    ("http://127.0.0.1:1/0", "http://127.0.0.1:1/0"),
    ("redis://127.0.0.1:notaport/0", "notaport"),
    ("not a url", "not a url"),
])
def test_wrong_broker_urls(url, named, tmp_path):
    result = run_cli("sweep", env=pipeline_env(url, PIPELINE_ARTIFACTS=str(tmp_path / "a")))
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and named in result.stderr
    assert not (tmp_path / "a").exists()


def test_redis_that_needs_a_password(tmp_path):
    port = free_port()
    proc = subprocess.Popen([redis_binary(), "--port", str(port), "--requirepass", "hunter2", "--save", "",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(0.3)
        result = run_cli("sweep", env=pipeline_env(f"redis://127.0.0.1:{port}/0",
                                                   PIPELINE_ARTIFACTS=str(tmp_path / "a")))
        assert result.returncode == 2 and "auth" in result.stderr.lower()
        assert len(result.stderr.strip().splitlines()) == 1
        wrong = run_cli("sweep", env=pipeline_env(f"redis://:nope@127.0.0.1:{port}/0"))
        assert wrong.returncode == 2 and "nope" not in wrong.stderr  # the password is not echoed
    finally:
        stop_process(proc)


def test_artifacts_root_outside_the_allowed_one(clean_redis, tmp_path):
    allowed = tmp_path / "allowed"
    env = pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS_ALLOWED=str(allowed))
    result = run_cli("sweep", "--artifacts", str(tmp_path / "elsewhere"), env=env)
    assert result.returncode == 2 and "elsewhere" in result.stderr
    assert not (tmp_path / "elsewhere").exists() and clean_redis.client().keys("pipeline:run*") == []
    sneaky = run_cli("sweep", "--artifacts", str(allowed / ".." / "elsewhere"), env=env)
    assert sneaky.returncode == 2


def test_cleanup_of_a_name_pointing_outside_the_run_dir_is_refused(cli_env, clean_redis, worker, tmp_path):
    """A record tampered with (download's output says ../victim.txt): cleanup refuses it."""
    from pipeline.definition import flow
    from pipeline.ledger.records import Ledger
    from pipeline.redis_conn import make_client
    from pipeline.runs.submit import RunRequest

    victim = tmp_path / "artifacts" / "victim.txt"
    victim.parent.mkdir(parents=True)
    victim.write_text("keep me")
    ledger = Ledger(make_client(clean_redis.url), 3600)
    run_id = "tampered-run"
    keys = flow.task_keys(1)
    assert ledger.create_run(run_id, {"id": run_id, "flow": flow.FLOW_NAME, "version": 1, "state": "Pending",
                                      "params": RunRequest(alphas=[1.0], artifacts_root=str(tmp_path / "artifacts"))
                                      .params(), "artifacts": str(tmp_path / "artifacts"), "queue": "default",
                                      "submitted": 1, "cancelled": 0}, keys)
    for key in keys[:4]:  # everything upstream "succeeded"; download's output is hostile
        assert ledger.begin_task(run_id, key).verdict == "run"
        ledger.finish_task(run_id, key, "Success", output="../victim.txt" if key == flow.DOWNLOAD else ["a", "b"])
    publish_raw(clean_redis.url, task_body(run_id, flow.cleanup_key(0)), "application/json",
                task="pipeline.cleanup_file")
    poll(lambda: ledger.task_states(run_id)[flow.cleanup_key(0)] == "Failed", "the cleanup to be refused", 30)
    assert "UnsafePathError" in ledger.tasks(run_id, [flow.cleanup_key(0)])[0]["error"]
    assert victim.read_text() == "keep me"


def test_message_with_a_path_in_its_run_id_touches_nothing(cli_env, clean_redis, worker, tmp_path):
    publish_until_logged(clean_redis.url, worker, task_body("../../etc", "download_dataset"), "application/json",
                         "of run ../../etc", "the worker to drop it")
    assert clean_redis.client().keys("pipeline:run:*") == []
    assert not (tmp_path / "etc").exists()


def test_a_recorded_run_whose_id_is_a_path_writes_nothing(cli_env, clean_redis, worker, tmp_path):
    """A run record under the id ``../../etc`` (written straight to Redis, past the CLI's
    checks): the worker finds the run, so only the artifacts code's run-id check
    (:func:`pipeline.artifacts.rundir.check_run_id`) stands between it and ``<root>/../../etc``,
    which is ``tmp_path/etc`` here."""
    from pipeline.definition import flow
    from pipeline.ledger.records import Ledger
    from pipeline.redis_conn import make_client
    from pipeline.runs.submit import RunRequest

    root = tmp_path / "deep" / "artifacts"
    escaped = tmp_path / "etc"  # root / "../../etc"
    ledger = Ledger(make_client(clean_redis.url), 3600)
    run_id = "../../etc"
    keys = flow.task_keys(1)
    assert ledger.create_run(run_id, {"id": run_id, "flow": flow.FLOW_NAME, "version": 1, "state": "Pending",
                                      "params": RunRequest(alphas=[1.0], artifacts_root=str(root)).params(),
                                      "artifacts": str(root), "queue": "default", "submitted": 1, "cancelled": 0},
                             keys)
    refused = "invalid run id '../../etc'"
    before = worker.text().count(refused)
    publish_raw(clean_redis.url, task_body(run_id, flow.DOWNLOAD), "application/json")
    poll(lambda: worker.text().count(refused) > before or escaped.exists(), "the worker to refuse the run id", 30)
    assert ledger.task_states(run_id)[flow.DOWNLOAD] != "Success"
    assert not escaped.exists(), sorted(str(p) for p in escaped.rglob("*"))


def test_a_worker_refuses_a_run_whose_root_is_outside_its_allowed_one(clean_redis, tmp_path):
    """The CLI (no PIPELINE_ARTIFACTS_ALLOWED of its own) submits a run rooted elsewhere; the
    worker, allowed only ``allowed/``, fails its download with the root named, never retried,
    and every later task is TriggerFailed: nothing is written anywhere."""
    from pipeline.definition import flow
    from test_sweep_integration import ledger_for

    allowed, elsewhere = tmp_path / "allowed", tmp_path / "elsewhere"
    label = f"fenced-{uuid.uuid4().hex[:8]}"
    env = pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS_ALLOWED=str(allowed))
    fenced = start_worker(clean_redis.url, tmp_path / "fenced.log", "--label", label, "--pool", "threads",
                          "--concurrency", "2", env=env)
    try:
        result = run_cli("run", "--alpha", "1.0", "--artifacts", str(elsewhere), "--label", label, "--retries", "3",
                         "--json", env=pipeline_env(clean_redis.url), timeout=120)
    finally:
        stop_process(fenced.proc)
    assert result.returncode == 1, (result.stdout, result.stderr, fenced.text()[-2000:])
    doc = json.loads(result.stdout)
    assert doc["state"] == "Failed"
    rows = {r["key"]: r for r in ledger_for(clean_redis.url).tasks(doc["run_id"], flow.task_keys(1))}
    download = rows.pop(flow.DOWNLOAD)
    assert download["state"] == "Failed" and download["attempts"] == 1, download
    assert str(elsewhere) in download["error"] and "outside the allowed roots" in download["error"], download
    assert {k: r["state"] for k, r in rows.items()} == {k: "TriggerFailed" for k in rows}
    assert not elsewhere.exists() and not allowed.exists()
