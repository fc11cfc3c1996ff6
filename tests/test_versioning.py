"""Flow versions grow when the pipeline's code changes, and only then."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, pipeline_env, poll, run_cli, start_worker, stop_process
from pipeline.definition import flow
from pipeline.ledger import versions as versioning
from pipeline.ledger.records import Ledger
from pipeline.redis_conn import make_client
from test_stages import tutorial_score
SOURCE = '''
def train(x, alpha=1.0):
    """Fit."""
    return x * alpha
'''


def test_digest_ignores_comments_layout_and_docstrings_but_not_code():
    base = versioning.definition_digest([SOURCE])
    cosmetic = '''# a comment
def train(x,
          alpha=1.0):  # another
    """Fit the model, documented at length."""

    return x * alpha   # trailing
'''
    assert versioning.definition_digest([cosmetic]) == base
    assert versioning.definition_digest([SOURCE.replace("alpha=1.0", "alpha=2.0")]) != base
    assert versioning.definition_digest([SOURCE.replace("x * alpha", "alpha * x")]) != base
    assert versioning.definition_digest([SOURCE, ""]) != base  # which file holds what matters


def copy_project(dest: Path) -> Path:
    """cli.py, beat_schedule.py, workers/ and pipeline/ copied to ``dest`` (a second installation to edit)."""
    dest.mkdir()
    for name in ("cli.py", "beat_schedule.py"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "workers", dest / "workers", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "pipeline", dest / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_package_digest_of_a_copy_follows_code_changes_only(tmp_path):
    copy = copy_project(tmp_path / "copy")
    assert versioning.package_digest(copy / "pipeline" / "definition") == versioning.current_digest()
    edit(copy / "pipeline" / "definition" / "stages.py", "def cleanup_file(", "# cleanup, reformatted\ndef   cleanup_file(")
    assert versioning.package_digest(copy / "pipeline" / "definition") == versioning.current_digest()
    edit(copy / "pipeline" / "definition" / "canvas.py", "immutable=True", "immutable=True, priority=1")
    assert versioning.package_digest(copy / "pipeline" / "definition") != versioning.current_digest()


def test_registry_gives_a_new_number_to_a_new_digest_only(clean_redis):
    client = clean_redis.client()
    first = versioning.register(client, "a" * 64)
    assert versioning.register(client, "a" * 64) == first
    second = versioning.register(client, "b" * 64)
    assert (first["version"], second["version"]) == (1, 2)
    assert second["first_seen"] >= first["first_seen"]


def submit(cli: Path, env: dict) -> str:
    """``run --no-wait`` through the installation at ``cli`` (to a queue no worker reads)."""
    result = subprocess.run([sys.executable, str(cli), "run", "--no-wait", "--label", "nobody-consumes-this"],
                            env=env, cwd=cli.parent, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_runs_record_the_version_and_flows_lists_them(clean_redis, tmp_path):
    env = pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS=str(tmp_path / "artifacts"))
    changed = copy_project(tmp_path / "changed")
    edit(changed / "pipeline" / "definition" / "stages.py", 'print("cleanup_file end")', 'print("cleanup_file", "end")')

    ids = [submit(ROOT / "cli.py", env), submit(changed / "cli.py", env)]
    client = clean_redis.client()
    assert [client.hget(f"pipeline:run:{run_id}", "version") for run_id in ids] == ["1", "2"]

    result = run_cli("flows", "--json", env=env)
    assert result.returncode == 0, result.stderr
    # the registered versions; a row of version None is a live worker (of another test of this
    # process, e.g. one from a copied tree) whose digest the flushed registry no longer holds
    versions = [v for v in json.loads(result.stdout) if v["version"] is not None]
    assert [(v["version"], v["runs"], v["current"]) for v in versions] == [(1, 1, True), (2, 1, False)], \
        json.loads(result.stdout)
    assert versions[0]["first_seen"].endswith("Z") and versions[0]["digest"] == versioning.current_digest()


@pytest.mark.slow
def test_a_worker_of_other_code_never_computes_a_run_and_one_of_its_version_does(clean_redis, tmp_path):
    """A worker from a copy whose stages.py differs (the split seed) hands the run's tasks back
    unbegun; ``sweep`` says no worker runs the run's version; ``flows`` shows who runs what;
    a worker of the run's version then computes the tutorial's R^2."""
    label = "versions-mixed"
    env = pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS=str(tmp_path / "artifacts"), PIPELINE_VERSION_BACKOFF="0.2")
    changed = copy_project(tmp_path / "changed")
    edit(changed / "pipeline" / "definition" / "stages.py", "SPLIT_SEED = 23", "SPLIT_SEED = 24")
    theirs, mine = versioning.package_digest(changed / "pipeline" / "definition"), versioning.current_digest()
    workers = [start_worker(clean_redis.url, tmp_path / "other.log", "--label", label, "--pool", "prefork",
                            "--concurrency", "1", env=env, cwd=changed,
                            command=(sys.executable, str(changed / "cli.py"), "worker"))]
    try:
        sent = run_cli("sweep", "--alphas", "1.0", "--label", label, "--no-wait", "--json", env=env)
        assert sent.returncode == 0, sent.stderr
        run_id = json.loads(sent.stdout)["run_id"]
        client = clean_redis.client()
        name = {d: versioning.version_name(versioning.version_of(client, d), d) for d in (mine, theirs)}
        assert (f"no live worker of queue {label!r} runs this code's flow {name[mine]} (they run {name[theirs]}); "
                "the run waits queued until one does") in sent.stderr, sent.stderr

        flows = run_cli("flows", "--json", env=env)
        assert flows.returncode == 0, flows.stderr
        by_digest = {v["digest"]: v for v in json.loads(flows.stdout)}
        ours = [w for w in by_digest[mine]["workers"] if w.startswith(f"{label}.")]  # the session's worker may be there
        assert ours == [] and by_digest[mine]["current"]
        assert [w.split("@")[0] for w in by_digest[theirs]["workers"]] == [f"{label}.{workers[0].proc.pid}"]

        refusal = (f"not running download_dataset: run {run_id} was submitted under flow {name[mine]}, "
                   f"this worker runs {name[theirs]}")
        poll(lambda: refusal in workers[0].text(), "the other worker to refuse the run", timeout=60)
        time.sleep(2)  # about ten more hand-backs at 0.2 s each
        book = Ledger(make_client(clean_redis.url), 3600)
        assert [(r["state"], r["attempts"]) for r in book.tasks(run_id, flow.task_keys(1))] == [("Pending", 0)] * len(flow.task_keys(1))
        assert book.get_run(run_id)["state"] == "Pending" and not (tmp_path / "artifacts" / run_id).exists()

        workers.append(start_worker(clean_redis.url, tmp_path / "mine.log", "--label", label, "--pool", "threads",
                                    env=env))
        waited = run_cli("wait", run_id, "--json", env=env)
        assert waited.returncode == 0, waited.stderr
        assert json.loads(waited.stdout)["results"] == {"1.0": tutorial_score(17, 100, 1.0)}
        assert {r["attempts"] for r in book.tasks(run_id, flow.task_keys(1))} == {1}
        assert "download_dataset begin" not in workers[0].text()
        assert workers[0].text().count(refusal) == 1 and "Traceback" not in workers[0].text()  # none a hand-back
    finally:
        for w in workers:
            stop_process(w.proc)


def test_begin_refuses_a_run_of_another_digest_and_changes_nothing(clean_redis):
    book = Ledger(make_client(clean_redis.url), 3600)
    keys = flow.task_keys(1)
    assert book.create_run("r-digest", {"id": "r-digest", "params": {"alphas": [1.0]}, "state": "Pending",
                                        "digest": "a" * 64}, keys)
    assert book.begin_task("r-digest", flow.DOWNLOAD, digest="b" * 64).verdict == "version"
    assert book.begin_read("r-digest", flow.DOWNLOAD, digest="b" * 64).begin.verdict == "version"
    assert book.tasks("r-digest", [flow.DOWNLOAD])[0]["attempts"] == 0 and book.get_run("r-digest")["state"] == "Pending"
    assert book.begin_task("r-digest", flow.DOWNLOAD, digest="a" * 64).verdict == "run"


def test_the_version_warning_names_whose_code_is_missing(clean_redis):
    from pipeline.ledger.workers import write_worker
    from pipeline.worker.liveness import version_message

    book = Ledger(make_client(clean_redis.url), 3600)
    client = clean_redis.client()
    write_worker(client, "pipeline:workers:q.1@h/1", {"queues": ["vq"], "digest": "c" * 64}, 10_000)
    versioning.register(client, "c" * 64)
    mine = versioning.current_digest()
    assert version_message(book, "vq", "c" * 64) is None and version_message(book, "other", mine) is None
    assert version_message(book, "vq", mine).startswith(
        f"no live worker of queue 'vq' runs this code's flow an unregistered version (digest {mine[:12]}) "
        f"(they run v1 (digest {'c' * 12})); the run waits queued until one does: start a worker from this code")
    assert "runs the run's flow an unregistered version (digest dddddddddddd)" in version_message(book, "vq", "d" * 64)
    client.delete("pipeline:workers:q.1@h/1")
