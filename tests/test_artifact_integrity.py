"""Verified artifacts through a real worker: a damaged or deleted file between two tasks
fails the reader by name, ``restart --from`` heals it, and files get the umask's mode."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import ROOT, poll, run_cli
from pipeline.artifacts.integrity import HashingWriter, MemoryFileBook
from pipeline.artifacts.rundir import RunDir
from pipeline.definition import flow, stages
from test_stages import tutorial_score
from test_sweep_integration import ledger_for

TRAIN_CSV = "train_dataset.csv"


def test_digest_is_taken_while_writing_and_matches_the_bytes(tmp_path):
    book = MemoryFileBook()
    run_dir = RunDir(tmp_path, "r1").ensure().tracked(book, "download_dataset")
    name = stages.download_dataset(run_dir)
    import hashlib

    data = (tmp_path / "r1" / name).read_bytes()
    assert book.expected(name).size == len(data) and book.expected(name).sha256 == hashlib.sha256(data).hexdigest()
    with open(tmp_path / "plain", "wb") as raw, HashingWriter(raw, tmp_path / "plain") as writer:
        writer.write(b"abc")
        assert writer.tell() == 3


def test_files_get_the_umasks_mode(tmp_path):
    code = (
        "import os, sys\n"
        "os.umask(int(sys.argv[2], 8))\n"
        "from pipeline.artifacts.rundir import RunDir\n"
        "with RunDir(sys.argv[1], 'r1').atomic('a.csv') as tmp:\n"
        "    tmp.write(b'1,2\\n')\n"
    )
    for umask, mode in (("022", 0o644), ("002", 0o664), ("077", 0o600)):
        root = tmp_path / umask
        done = subprocess.run([sys.executable, "-c", code, str(root), umask], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert stat.S_IMODE((root / "r1" / "a.csv").stat().st_mode) == mode, umask


def sweep_until_train_csv(cli_env, clean_redis) -> tuple[str, Path]:
    """A one-alpha sweep whose stages sleep 2 s; return once preprocess wrote the train CSV
    (train starts only after preprocess's sleep)."""
    sent = run_cli("sweep", "--alphas", "1.0", "--sleep", "2", "--no-wait", "--json", env=cli_env)
    assert sent.returncode == 0, sent.stderr
    doc = json.loads(sent.stdout)
    run_dir = Path(doc["artifacts"])
    poll(lambda: (run_dir / TRAIN_CSV).exists(), "preprocess to write the train CSV", interval=0.02)
    assert ledger_for(clean_redis.url).task_states(doc["run_id"])[flow.train_key(0)] == "Pending"
    return doc["run_id"], run_dir


def failed_train(cli_env, clean_redis, run_id: str) -> dict:
    waited = run_cli("wait", run_id, "--json", env=cli_env)
    assert waited.returncode == 1, waited.stderr
    assert json.loads(waited.stdout)["state"] == "Failed"
    rows = {r["key"]: r for r in ledger_for(clean_redis.url).tasks(run_id, flow.task_keys(1))}
    assert rows[flow.evaluate_key(0)]["state"] == "TriggerFailed"
    return rows[flow.train_key(0)]


def test_truncated_train_csv_fails_train_naming_the_file_and_preprocess(cli_env, clean_redis):
    run_id, run_dir = sweep_until_train_csv(cli_env, clean_redis)
    path = run_dir / TRAIN_CSV
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:10]))  # still a valid CSV

    train = failed_train(cli_env, clean_redis, run_id)
    assert train["state"] == "Failed" and train["attempts"] == 1
    assert train["error"].startswith(f"ArtifactDamaged: file {TRAIN_CSV} of run {run_id} "
                                     f"(written by preprocess_dataset) is damaged"), train["error"]
    assert "bytes instead of" in train["error"]


def test_garbage_in_the_train_csv_fails_train_naming_the_file_and_preprocess(cli_env, clean_redis):
    run_id, run_dir = sweep_until_train_csv(cli_env, clean_redis)
    path = run_dir / TRAIN_CSV
    path.write_bytes(b"\x00garbage" * (path.stat().st_size // 8) + b"\x00" * (path.stat().st_size % 8))

    train = failed_train(cli_env, clean_redis, run_id)
    assert train["error"].startswith(f"ArtifactDamaged: file {TRAIN_CSV} of run {run_id} "
                                     f"(written by preprocess_dataset) is damaged: sha256"), train["error"]


def test_deleted_train_csv_fails_train_and_restart_from_preprocess_heals_it(cli_env, clean_redis):
    run_id, run_dir = sweep_until_train_csv(cli_env, clean_redis)
    os.unlink(run_dir / TRAIN_CSV)

    train = failed_train(cli_env, clean_redis, run_id)
    assert train["error"].startswith(f"ArtifactMissing: file {TRAIN_CSV} of run {run_id} "
                                     f"(written by preprocess_dataset) is missing"), train["error"]
    assert f"restart {run_id} --from preprocess_dataset" in train["error"]

    bad = run_cli("restart", run_id, "--from", "preprocess", env=cli_env)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: --from: unknown task key 'preprocess' in run {run_id}"], bad.stderr
    healed = run_cli("restart", run_id, "--from", flow.PREPROCESS, "--json", env=cli_env)
    assert healed.returncode == 0, healed.stderr
    doc = json.loads(healed.stdout)
    assert doc["state"] == "Success" and doc["results"] == {"1.0": tutorial_score(17, 100, 1.0)}
    rows = {r["key"]: r for r in ledger_for(clean_redis.url).tasks(run_id, flow.task_keys(1))}
    assert rows[flow.DOWNLOAD]["attempts"] == 1 and rows[flow.PREPROCESS]["attempts"] == 2
    assert rows[flow.PREPROCESS]["history"][0]["state"] == "Success"
    assert float(np.loadtxt(run_dir / "eval_model_1.0_train_dataset.txt")) == tutorial_score(17, 100, 1.0)


def test_restart_from_reruns_a_succeeded_run_from_that_task(cli_env, clean_redis):
    done = run_cli("sweep", "--alphas", "1.0", "0.1", "--json", env=cli_env)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    again = run_cli("restart", run_id, "--from", flow.DOWNLOAD, "--json", env=cli_env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["results"] == json.loads(done.stdout)["results"]
    rows = ledger_for(clean_redis.url).tasks(run_id, flow.task_keys(2))
    assert {r["key"]: r["attempts"] for r in rows} == {k: 2 for k in flow.task_keys(2)}
