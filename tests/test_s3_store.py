"""Artifacts on S3: the store on a local path and on moto's S3 server, and a sweep on two
workers that share no disk (each its own cwd and temp dir), reading each other's files
only through the bucket.

moto runs as a real HTTP endpoint (``python -m moto.server``) on a free 127.0.0.1 port;
workers and this process reach it through the usual AWS_* environment variables.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from conftest import Worker, free_port, pipeline_env, run_cli, start_worker, stop_process
from pipeline.definition import flow
from pipeline.definition import stages
from pipeline.artifacts.rundir import RunDir, UnsafePathError
from pipeline.artifacts.store import TMP_PREFIX, is_url, normalize_root, run_location
from pipeline.runs.submit import wait_for_run
from pipeline.settings import Settings
from test_stages import tutorial_score
from test_sweep_integration import ledger_for

LABEL = "s3hosts"
"""Queue of this module's workers (the session's default-queue worker has no S3 access)."""

TICKS_BUCKET = f"ticks-{uuid.uuid4().hex[:12]}"
"""Bucket of the workers' ``PIPELINE_ARTIFACTS`` (``s3://<it>/ticks``): where scheduled runs go."""


@dataclass
class Moto:
    """A moto S3 server subprocess."""

    endpoint: str
    proc: subprocess.Popen

    def env(self, endpoint_variable: str = "AWS_ENDPOINT_URL") -> dict[str, str]:
        """AWS_* variables pointing botocore (and so s3fs) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            endpoint_variable: self.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        }

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object in ``bucket``: key -> body."""
        client = self.client()
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}

    def etags(self, bucket: str) -> dict[str, str]:
        return {o["Key"]: o["ETag"] for o in self.client().list_objects_v2(Bucket=bucket).get("Contents", [])}


@pytest.fixture(scope="module")
def moto(tmp_path_factory) -> Iterator[Moto]:
    """moto's S3 server on a free port, for this module."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Moto(f"http://127.0.0.1:{port}", proc)
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(server.endpoint, timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                stop_process(proc)
                raise RuntimeError("moto server did not start")
            time.sleep(0.1)
    yield server
    stop_process(proc)


@pytest.fixture
def s3_env(moto: Moto, monkeypatch) -> Moto:
    """This process talks to moto too (fresh s3fs instances pick the variables up).

    It names the endpoint with the S3-specific variable, the workers with the generic one.
    """
    import s3fs

    for name, value in moto.env("AWS_ENDPOINT_URL_S3").items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    return moto


@pytest.fixture
def bucket(moto: Moto) -> str:
    """A new, empty bucket."""
    name = f"art-{uuid.uuid4().hex[:12]}"
    moto.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    """An artifacts root: a local directory, or a prefix in a fresh moto bucket."""
    if request.param == "local":
        return str(tmp_path / "artifacts")
    request.getfixturevalue("s3_env")
    return f"s3://{request.getfixturevalue('bucket')}/prefix"


def stored(root: str, moto: Moto) -> list[str]:
    """Everything under the root: relative local paths, or every key of the bucket."""
    if is_url(root):
        return sorted(moto.objects(root[len("s3://"):].split("/")[0]))
    base = Path(root)
    return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()) if base.exists() else []


# -- the store, on a local path and on S3 ----------------------------------------------

def test_write_read_list_remove(root, moto):
    run_dir = RunDir(root, "r1").ensure()
    data = np.array([[1.5, -2.25], [3.0, 4.125]])
    with run_dir.atomic("a.csv") as tmp:
        np.savetxt(tmp, data, delimiter=",")
    with run_dir.atomic("b.txt") as tmp:
        tmp.write(b"b")
    with run_dir.reader("a.csv") as handle:
        assert np.array_equal(np.loadtxt(handle, delimiter=","), data)
    assert run_dir.listing() == ["a.csv", "b.txt"]
    assert RunDir(root, "r2").listing() == [] and RunDir(root, "r").listing() == []  # "r" prefixes "r1"
    assert run_dir.remove("a.csv") is True
    assert run_dir.remove("a.csv") is False
    assert run_dir.listing() == ["b.txt"]
    assert str(run_dir.path) == run_location(root, "r1")
    expected = "prefix/r1/b.txt" if is_url(root) else "r1/b.txt"
    assert stored(root, moto) == [expected]


def test_failed_write_leaves_no_file_or_object(root, moto):
    run_dir = RunDir(root, "r1").ensure()
    with pytest.raises(RuntimeError):
        with run_dir.atomic("x.csv") as tmp:
            tmp.write(b"half a file")
            raise RuntimeError("killed mid-write")
    assert not Path(tmp.path).exists()
    assert run_dir.listing() == []
    assert stored(root, moto) == []


@pytest.mark.parametrize("name", ["../x", "..", ".", "a/b", "/etc/passwd", "", "x\x00y", "..\\x"])
def test_names_outside_the_run_are_refused(root, moto, name):
    run_dir = RunDir(root, "r1").ensure()
    with pytest.raises(UnsafePathError):
        run_dir.resolve(name)
    with pytest.raises(UnsafePathError):
        with run_dir.atomic(name) as tmp:
            tmp.write(b"escaped")
    with pytest.raises(UnsafePathError):
        run_dir.remove(name)
    with pytest.raises(UnsafePathError):
        with run_dir.reader(name):
            pass
    assert stored(root, moto) == []


def test_stages_on_the_store_reproduce_the_tutorial(root):
    run_dir = RunDir(root, "r1").ensure()
    dataset = stages.download_dataset(run_dir)
    train, test = stages.preprocess_dataset(run_dir, dataset)
    model = stages.train_model(run_dir, train, 0.1)
    eval_name, score = stages.evaluate_model(run_dir, model, test)
    assert score == tutorial_score(17, 100, 0.1)
    for name in (dataset, model, train, test):
        stages.cleanup_file(run_dir, name)
    assert run_dir.listing() == [eval_name]
    with run_dir.reader(eval_name) as handle:
        assert float(np.loadtxt(handle)) == score


def test_roots_are_normalized(tmp_path):
    assert normalize_root("s3://bucket/prefix/") == "s3://bucket/prefix"
    assert normalize_root(f"file://{tmp_path}/a") == str(tmp_path / "a")
    assert normalize_root(tmp_path / "x" / ".." / "a") == str(tmp_path / "a")
    assert run_location("s3://bucket/prefix", "r1") == "s3://bucket/prefix/r1"
    for bad in ("nosuchproto://bucket/x", "s3://", "s3:///"):
        with pytest.raises(ValueError):
            normalize_root(bad)


def test_bad_artifacts_url_is_bad_input(tmp_path):
    url = "nosuchproto://bucket/x"
    env = pipeline_env(f"redis://127.0.0.1:{free_port()}/0")
    result = run_cli("sweep", "--alphas", "1.0", "--artifacts", url, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and url in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- two workers that share no disk ------------------------------------------------------

@dataclass
class Host:
    """One worker with its own cwd and temp dir, as if on its own machine."""

    worker: Worker
    cwd: Path
    tmp: Path

    def tasks_done(self) -> set[str]:
        """Names of the pipeline tasks this worker finished successfully."""
        return {line.split("Task ", 1)[1].split("[", 1)[0]
                for line in self.worker.text().splitlines() if "Task pipeline." in line and " succeeded in " in line}


@pytest.fixture(scope="module")
def hosts(redis_server, moto, tmp_path_factory) -> Iterator[list[Host]]:
    """Two single-slot workers on queue LABEL, each with its own cwd and TMPDIR."""
    started: list[Host] = []
    moto.client().create_bucket(Bucket=TICKS_BUCKET)
    try:
        for name in ("host_a", "host_b"):
            base = tmp_path_factory.mktemp(name)
            cwd, tmp = base / "cwd", base / "tmp"
            cwd.mkdir()
            tmp.mkdir()
            env = pipeline_env(redis_server.url, TMPDIR=str(tmp), PIPELINE_ARTIFACTS=f"s3://{TICKS_BUCKET}/ticks",
                               **moto.env())
            worker = start_worker(redis_server.url, base / "worker.log", "--label", LABEL, "--pool", "threads",
                                  "--concurrency", "1", "--log-tasks", env=env, cwd=cwd)
            started.append(Host(worker, cwd, tmp))
        yield started
    finally:
        for host in started:
            stop_process(host.worker.proc)


def assert_no_local_traces(hosts: list[Host], cli_cwd: Path) -> None:
    for host in hosts:
        assert list(host.cwd.iterdir()) == [], f"worker wrote into its cwd: {list(host.cwd.iterdir())}"
        assert [p.name for p in host.tmp.iterdir() if p.name.startswith(TMP_PREFIX)] == []
    assert list(cli_cwd.iterdir()) == []


def test_sweep_on_two_workers_sharing_only_a_bucket(clean_redis, moto, bucket, hosts, tmp_path):
    alphas = ["1.0", "0.1", "0.01"]
    url = f"s3://{bucket}/prefix"
    env = pipeline_env(clean_redis.url)  # the CLI itself needs no S3 access
    result = run_cli("sweep", "--alphas", *alphas, "--artifacts", url, "--label", LABEL, "--sleep", "0.5",
                     "--json", env=env, cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    run_id = doc["run_id"]
    assert doc["state"] == "Success"
    assert doc["artifacts"] == f"{url}/{run_id}"
    assert ledger_for(clean_redis.url).get_run(run_id)["artifacts"] == url

    expected = {str(float(a)): tutorial_score(17, 100, float(a)) for a in alphas}
    assert doc["results"] == expected
    objects = moto.objects(bucket)
    assert sorted(objects) == sorted(f"prefix/{run_id}/eval_model_{a}_train_dataset.txt" for a in expected)
    for alpha, score in expected.items():
        assert float(objects[f"prefix/{run_id}/eval_model_{alpha}_train_dataset.txt"]) == score

    done = [host.tasks_done() for host in hosts]
    assert all(done), f"both workers should have run tasks: {done}"
    other = next(d for d in done if "pipeline.preprocess_dataset" not in d)
    assert other & {"pipeline.train_model", "pipeline.evaluate_model"}, \
        f"a worker read files it never wrote: {done}"
    assert_no_local_traces(hosts, tmp_path)


def failed_run(clean_redis, url: str, cwd: Path) -> str:
    """A one-alpha run whose train fails for good (fail rate 1); returns its id."""
    result = run_cli("run", "--alpha", "1.0", "--fail-rate", "1", "--artifacts", url, "--label", LABEL, "--json",
                     env=pipeline_env(clean_redis.url), cwd=cwd, timeout=240)
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["state"] == "Failed" and doc["artifacts"] == f"{url}/{doc['run_id']}"
    return doc["run_id"]


def test_restart_command_finishes_a_failed_run_from_the_bucket(clean_redis, moto, bucket, hosts, tmp_path):
    """A failed run leaves its inputs in the bucket; ``restart`` (the CLI, on the workers) reruns
    only the failed branch from them: download and preprocess are not run again."""
    url = f"s3://{bucket}/prefix"
    run_id = failed_run(clean_redis, url, tmp_path)
    inputs = {f"prefix/{run_id}/{n}" for n in ("dataset.csv", "train_dataset.csv", "test_dataset.csv")}
    assert set(moto.etags(bucket)) == inputs
    ledger = ledger_for(clean_redis.url)
    assert ledger.task_states(run_id)[flow.train_key(0)] == "Failed"

    result = run_cli("restart", run_id, "--fail-rate", "0", "--json", env=pipeline_env(clean_redis.url),
                     cwd=tmp_path, timeout=240)  # the cause of the failure is fixed
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["state"] == "Success" and doc["run_id"] == run_id
    assert doc["results"] == {"1.0": tutorial_score(17, 100, 1.0)}
    attempts = {row["key"]: row["attempts"] for row in ledger.tasks(run_id, flow.task_keys(1))}
    assert attempts[flow.DOWNLOAD] == attempts[flow.PREPROCESS] == 1, attempts
    assert attempts[flow.train_key(0)] == 2, attempts
    eval_key = f"prefix/{run_id}/eval_model_1.0_train_dataset.txt"
    objects = moto.objects(bucket)
    assert sorted(objects) == [eval_key]  # cleanup removed the inputs after reading them
    assert float(objects[eval_key]) == tutorial_score(17, 100, 1.0)
    done = set().union(*(host.tasks_done() for host in hosts))
    assert {"pipeline.train_model", "pipeline.evaluate_model"} <= done
    assert_no_local_traces(hosts, tmp_path)


# -- scheduled and backfilled runs on an object-store root --------------------------------

TICK = datetime(2026, 11, 28, 9, 1, tzinfo=timezone.utc)
"""The tick of this section's runs (seed: its unix time; its stamp in every file name)."""


def assert_tick_run_in_bucket(clean_redis, moto: Moto, url: str, run_id: str, cwd: Path) -> None:
    """The run succeeded with its record, files and ``status --json`` on ``url``, nothing local."""
    ledger = ledger_for(clean_redis.url)
    assert wait_for_run(ledger, run_id) == "Success"
    assert ledger.get_run(run_id)["artifacts"] == url
    bucket, prefix = url[len("s3://"):].split("/", 1)
    name = f"eval_model_1.0_train_dataset_{TICK:%Y%m%d%H%M%S}.txt"
    objects = moto.objects(bucket)
    assert sorted(objects) == [f"{prefix}/{run_id}/{name}"]
    assert float(objects[f"{prefix}/{run_id}/{name}"]) == tutorial_score(int(TICK.timestamp()), 100, 1.0)
    status = run_cli("status", run_id, "--json", env=pipeline_env(clean_redis.url), cwd=cwd)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["artifacts"] == f"{url}/{run_id}"


@pytest.mark.parametrize("given_by", ["--artifacts", "PIPELINE_ARTIFACTS"])
def test_backfill_into_a_bucket_writes_only_to_the_bucket(clean_redis, moto, bucket, hosts, tmp_path, given_by):
    url = f"s3://{bucket}/prefix"
    tick = f"{TICK:%Y-%m-%dT%H:%M}"
    argv = ["backfill", "--start", tick, "--end", tick, "--alphas", "1.0", "--label", LABEL, "--json"]
    if given_by == "--artifacts":
        result = run_cli(*argv, "--artifacts", url, env=pipeline_env(clean_redis.url), cwd=tmp_path)
    else:
        result = run_cli(*argv, env=pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS=url), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_id,) = json.loads(result.stdout)["created_runs"]
    assert_tick_run_in_bucket(clean_redis, moto, url, run_id, tmp_path)
    assert_no_local_traces(hosts, tmp_path)


def test_scheduled_run_goes_to_the_workers_object_store_root(clean_redis, moto, hosts, tmp_path, monkeypatch):
    """The scheduled-run task, on a worker whose PIPELINE_ARTIFACTS is a bucket, puts the run there."""
    from pipeline.celery_app import app, configure
    from pipeline.schedule.tick_task import scheduled_run

    monkeypatch.setenv("CELERY_BROKER_URL", clean_redis.url)
    configure(app, Settings.from_env(pipeline_env(clean_redis.url)))
    sent = scheduled_run.apply_async(kwargs={"tick": TICK.isoformat(), "alphas": [1.0], "label": LABEL},
                                     queue=LABEL)
    run_id = sent.get(timeout=120)["run_id"]
    assert_tick_run_in_bucket(clean_redis, moto, f"s3://{TICKS_BUCKET}/ticks", run_id, tmp_path)
    assert_no_local_traces(hosts, tmp_path)


# -- verified artifacts, on a local path and on S3 ---------------------------------------

def test_damaged_or_missing_files_fail_their_reader_naming_the_file_and_its_writer(root, moto):
    from pipeline.artifacts.integrity import ArtifactDamaged, ArtifactMissing, MemoryFileBook

    book = MemoryFileBook()
    writer = RunDir(root, "r1").ensure().tracked(book, "preprocess_dataset")
    reader = RunDir(root, "r1").tracked(book, "train_model[0]")
    data = np.arange(20.0).reshape(10, 2)
    with writer.atomic("train.csv") as tmp:
        np.savetxt(tmp, data, delimiter=",")
    recorded = book.expected("train.csv")
    assert recorded.task == "preprocess_dataset" and recorded.size == len(stored_bytes(root, "train.csv"))
    with reader.reader("train.csv") as handle:
        assert np.array_equal(np.loadtxt(handle, delimiter=","), data)

    unrecorded = RunDir(root, "r1")  # no book: writes are not recorded, so this one damages the file
    for damage in (stored_bytes(root, "train.csv")[:40], b"x" * len(stored_bytes(root, "train.csv"))):
        with unrecorded.atomic("train.csv") as tmp:
            tmp.write(damage)
        with pytest.raises(ArtifactDamaged, match=r"file train\.csv of run r1 \(written by preprocess_dataset\) "
                                                   r"is damaged.*restart r1 --from preprocess_dataset"):
            with reader.reader("train.csv") as handle:
                np.loadtxt(handle, delimiter=",")
    unrecorded.remove("train.csv")
    with pytest.raises(ArtifactMissing, match=r"file train\.csv of run r1 \(written by preprocess_dataset\) is missing"):
        with reader.reader("train.csv"):
            pass


def stored_bytes(root: str, name: str) -> bytes:
    with RunDir(root, "r1").reader(name) as handle:
        return handle.read()


# -- the stage cache, on a local path and on S3 ------------------------------------------

def test_cache_store_round_trip_damage_and_prune(root, moto):
    import hashlib

    from pipeline.cache.store import BLOB_GRACE, CacheMiss, CacheStore, Entry

    store = CacheStore(root)
    assert store.location == (f"{root}/.cache" if is_url(root) else str(Path(root) / ".cache"))
    content = b"0.965\n" * 50
    files = {"eval.txt": {"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}}
    entry = Entry("e" * 64, "evaluate_model", {"file": "eval.txt", "score": 0.965}, files, "run-1", "evaluate_model[0]")
    store.put(entry, {"eval.txt": content})
    assert store.get("e" * 64) == (entry, {"eval.txt": content})
    assert [e.key for e in store.entries()] == ["e" * 64]
    blob = f"{store.location}/blobs/{files['eval.txt']['sha256']}"
    if is_url(root):
        import fsspec

        fsspec.filesystem("s3").pipe_file(blob[len("s3://"):], content[:-3])
    else:
        Path(blob).write_bytes(content[:-3])
    with pytest.raises(CacheMiss, match="damaged"):
        store.get("e" * 64)
    report = store.prune(max_size=0, now=time.time() + BLOB_GRACE + 1)
    assert (report.entries_removed, report.blobs_removed, report.entries_kept) == (1, 1, 0)
    assert [p for p in stored(root, moto) if ".cache/" in p] == []
