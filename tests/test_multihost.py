"""Several hosts, one broker, one artifact store, and a host lost mid-run.

The test builds its own machines from network namespaces (tests/hostnet.py): ``server``
runs Redis and moto's S3 server, bound to its address on a private /24; ``host-a`` and
``host-b`` each run a worker (own cwd, own TMPDIR) that reaches them over that network;
``client`` runs the CLI. Nothing leaves the namespaces the test created.

The test process itself watches the run through Redis's Unix socket (a file, not the
network) and reads the bucket by running tests/multihost_probe.py on ``client``.

A lost host: every process on it SIGKILLed, or its cable pulled (``eth0`` down inside
the host, its worker alive but unreachable). Either way its heartbeat stops reaching
Redis; once its key expired (``PIPELINE_WORKER_TTL``, 15 s) the other worker puts its
unacknowledged messages back in the queue and runs them, with default settings (the
visibility timeout stays an hour). A message Redis hands to a cut host in the second
after the cut is lost instead: no message of its run is left in the broker, and once the
run was idle for ``PIPELINE_LOST_AFTER`` (30 s) a worker sends its tasks again.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator

import pytest

import hostnet
from conftest import CLI, needs, pipeline_env, poll, redis_binary
from pipeline.definition import flow
from pipeline.ledger.records import Ledger
from pipeline.artifacts.store import TMP_PREFIX
from test_stages import tutorial_score
from test_sweep_integration import ledger_for

REASON = hostnet.unavailable()
needs_hosts = needs(None if REASON is None else f"cannot build hosts from namespaces: {REASON}")

HOSTS = ("server", "host-a", "host-b", "client")
WORKERS = ("host-a", "host-b")
REDIS_PORT, S3_PORT = 16379, 15000
DEAD_AFTER = 15 - 5
"""Seconds after a loss before its worker can count as dead at the earliest: its record's TTL
(PIPELINE_WORKER_TTL) less the time since its last refresh (PIPELINE_WORKER_HEARTBEAT)."""

RECOVERY_BOUND = 30.0
"""Seconds from a loss to its tasks' new start (issue 18); the visibility timeout is 3600 s."""

PROBE = str(Path(__file__).with_name("multihost_probe.py"))
TASK_LINE = re.compile(r"Task (pipeline\.\w+)\[([0-9a-f-]+)\] (received|succeeded)")


@dataclass
class Cluster:
    """The namespaces, the server's processes, and how each host's processes are configured."""

    net: hostnet.HostNet
    base: Path
    socket: Path

    @property
    def broker(self) -> str:
        return f"redis://{self.net.addr('server')}:{REDIS_PORT}/0"

    @property
    def s3(self) -> str:
        return f"http://{self.net.addr('server')}:{S3_PORT}"

    def env(self, host: str, s3: bool = True) -> dict[str, str]:
        """Environment of a process on ``host``: the broker, default settings otherwise, S3 if asked."""
        env = {k: v for k, v in pipeline_env(self.broker).items()
               if not k.startswith("AWS_") and "proxy" not in k.lower()}
        env.update(PIPELINE_STATE_DIR=str(self.base / host / "state"), TMPDIR=str(self.base / host / "tmp"))
        if s3:
            env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                       AWS_ENDPOINT_URL=self.s3, AWS_EC2_METADATA_DISABLED="true",
                       AWS_CONFIG_FILE="/nonexistent/aws-config",
                       AWS_SHARED_CREDENTIALS_FILE="/nonexistent/aws-credentials")
        return env

    def cwd(self, host: str) -> Path:
        return self.base / host / "cwd"

    @cached_property
    def ledger(self) -> Ledger:
        """The run ledger, read through Redis's Unix socket from the test process."""
        return ledger_for(f"unix://{self.socket}?db=0")

    def probe(self, *args: str) -> str:
        done = self.net.run("client", [sys.executable, PROBE, *args], env=self.env("client"), cwd=self.cwd("client"))
        assert done.returncode == 0, done.stderr
        return done.stdout

    def objects(self, bucket: str) -> dict[str, str]:
        """Every object of ``bucket``, read from the client host."""
        return json.loads(self.probe("objects", bucket))

    def new_bucket(self) -> str:
        name = f"art-{uuid.uuid4().hex[:12]}"
        self.probe("mkbucket", name)
        return name

    def sweep(self, bucket: str, *args: str, timeout: float = 180) -> dict:
        """``cli.py sweep --json`` on the client host, with only the broker in its environment."""
        argv = [sys.executable, CLI, "sweep", "--artifacts", f"s3://{bucket}/prefix", "--json", *args]
        done = self.net.run("client", argv, env=self.env("client", s3=False), cwd=self.cwd("client"),
                            timeout=timeout)
        assert done.returncode == 0, f"exit {done.returncode}\n{done.stderr}"
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """The hosts, with Redis and moto running on ``server``; torn down whatever happens."""
    base = tmp_path_factory.mktemp("hosts")
    for host in HOSTS:
        for sub in ("cwd", "tmp", "state"):
            (base / host / sub).mkdir(parents=True)
    hostnet.remove_stale()
    net = hostnet.HostNet(HOSTS).create()
    try:
        server = net.addr("server")
        cluster = Cluster(net, base, base / "server" / "redis.sock")
        net.start("server", [redis_binary(), "--bind", server, "--port", str(REDIS_PORT), "--unixsocket",
                             str(cluster.socket), "--unixsocketperm", "700", "--dir", str(base / "server"),
                             "--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction"],
                  base / "redis.log", env=dict(os.environ))
        net.start("server", [sys.executable, "-m", "moto.server", "-H", server, "-p", str(S3_PORT)],
                  base / "moto.log", env=cluster.env("server"), cwd=cluster.cwd("server"))
        cluster.probe("wait", f"{server}:{REDIS_PORT}", cluster.s3)
        yield cluster
    finally:
        net.destroy()
        assert net.made == [], f"namespaces left behind: {net.made}"


@dataclass
class WorkerHost:
    """A worker process on one host and its log."""

    host: str
    proc: subprocess.Popen
    log: Path

    def lines(self) -> list[tuple[str, str, str]]:
        """(task name, Celery id, received|succeeded) for every task line of the log."""
        return TASK_LINE.findall(self.log.read_text(errors="replace"))

    def ids(self, event: str, name: str = "") -> set[str]:
        """Celery ids of the tasks (named ``pipeline.<name>...``) with ``event`` in the log."""
        return {tid for task, tid, ev in self.lines() if ev == event and task.startswith(f"pipeline.{name}")}


def start_workers(cluster: Cluster, labels: dict[str, tuple[str, ...]]) -> dict[str, WorkerHost]:
    """Start a threads worker (2 slots) on each host of ``labels`` with those labels; wait until ready."""
    started = {}
    for host, host_labels in labels.items():
        log = cluster.base / f"{host}-worker-{uuid.uuid4().hex[:6]}.log"
        argv = [sys.executable, CLI, "worker", "--pool", "threads", "--concurrency", "2", "--log-tasks"]
        for label in host_labels:
            argv += ["--label", label]
        proc = cluster.net.start(host, argv, log, env=cluster.env(host), cwd=cluster.cwd(host))
        started[host] = WorkerHost(host, proc, log)
    for worker in started.values():
        poll(lambda: " ready." in worker.log.read_text(errors="replace") or worker.proc.poll() is not None,
             timeout=90, what=f"the worker on {worker.host}")
        assert worker.proc.poll() is None, worker.log.read_text()
    return started


@pytest.fixture(scope="module")
def pool(cluster: Cluster) -> dict[str, WorkerHost]:
    """The worker of each worker host, kept across tests (a test that loses a host gets it replaced)."""
    return {}


@pytest.fixture
def workers(cluster: Cluster, pool: dict[str, WorkerHost]) -> dict[str, WorkerHost]:
    """A live, connected worker on each worker host, on the default queue and the host's own queue.

    A host lost by an earlier test is wiped (its processes killed), reconnected and given a new worker.
    """
    lost = [h for h in WORKERS if h not in pool or pool[h].proc.poll() is not None or h in cluster.net.down]
    for host in lost:
        cluster.net.kill_host(host)
        cluster.net.reconnect(host)
    pool.update(start_workers(cluster, {host: ("default", host) for host in lost}))
    return dict(pool)


def expected_scores(alphas: list[str]) -> dict[str, float]:
    return {str(float(a)): tutorial_score(17, 100, float(a)) for a in alphas}


def assert_only_evals(cluster: Cluster, bucket: str, doc: dict, alphas: list[str]) -> None:
    """The bucket holds exactly the run's eval objects, each with the tutorial's score."""
    expected = expected_scores(alphas)
    objects = cluster.objects(bucket)
    prefix = f"prefix/{doc['run_id']}/"
    assert sorted(objects) == sorted(f"{prefix}eval_model_{a}_train_dataset.txt" for a in expected)
    for alpha, score in expected.items():
        assert float(objects[f"{prefix}eval_model_{alpha}_train_dataset.txt"]) == score


def assert_no_local_files(cluster: Cluster) -> None:
    for host in (*WORKERS, "client"):
        assert list(cluster.cwd(host).iterdir()) == [], f"{host} wrote into its cwd"
        assert [p for p in (cluster.base / host / "tmp").iterdir() if p.name.startswith(TMP_PREFIX)] == []


def test_reasons_to_skip(monkeypatch):
    """Where hosts cannot be made, the tests above skip (fail on CI) and say why."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert hostnet.unavailable() == "network namespaces need root"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(hostnet.shutil, "which", lambda name: None)
    assert "iproute2" in hostnet.unavailable()
    monkeypatch.setattr(hostnet.shutil, "which", lambda name: "/usr/sbin/ip")
    refused = subprocess.CompletedProcess([], 1, "", "mount --make-shared /run/netns failed: Operation not permitted")
    monkeypatch.setattr(hostnet, "_ip", lambda *args, check=True: refused)
    assert hostnet.unavailable() == f"`ip netns add` failed: {refused.stderr}"


def runs_since(ledger: Ledger, since: float) -> list[str]:
    """Ids of the runs created at or after ``since``, oldest first."""
    return ledger.r.zrangebyscore(ledger.runs_index, since, "+inf")


@needs_hosts
def test_sweep_across_hosts(cluster, workers):
    alphas = ["1.0", "0.1", "0.01", "0.001"]
    bucket = cluster.new_bucket()
    doc = cluster.sweep(bucket, "--alphas", *alphas, "--sleep", "0.2")
    assert doc["state"] == "Success"
    assert doc["results"] == expected_scores(alphas)
    assert doc["artifacts"] == f"s3://{bucket}/prefix/{doc['run_id']}"
    assert_only_evals(cluster, bucket, doc, alphas)

    ledger = cluster.ledger
    rows = ledger.tasks(doc["run_id"], flow.task_keys(len(alphas)))
    assert all(row["state"] == "Success" and row["attempts"] == 1 for row in rows), rows
    run_ids = set(ledger.task_ids(doc["run_id"]).values())
    done = {host: w.ids("succeeded") & run_ids for host, w in workers.items()}
    assert all(done.values()), f"both hosts should have run tasks: {done}"
    assert done["host-a"] | done["host-b"] == run_ids and not done["host-a"] & done["host-b"]
    assert_no_local_files(cluster)


def brpop_clients(cluster: Cluster, host: str) -> list[dict]:
    """Connections from ``host`` blocked in BRPOP on the server (as Redis sees them)."""
    addr = cluster.net.addr(host) + ":"
    return [c for c in cluster.ledger.r.client_list() if c["addr"].startswith(addr) and c["cmd"] == "brpop"
            and "b" in c["flags"]]


@needs_hosts
@pytest.mark.parametrize("loss", ["killed", "cut"])
def test_host_lost_mid_run(cluster, workers, loss):
    """A worker host is lost while it runs two train_model tasks; the other host finishes the run.

    ``cut``: the host is lost when no BRPOP of its worker is pending on the server (its two
    slots are busy), so every message it got is recorded as unacked (see the next test).
    """
    alphas = ["1.0", "0.1", "0.01", "0.001"]
    bucket = cluster.new_bucket()
    ledger = cluster.ledger
    executor = ThreadPoolExecutor(1)
    submitted = time.time()
    future = executor.submit(cluster.sweep, bucket, "--alphas", *alphas, "--sleep", "1")
    try:
        run_id = poll(lambda: runs_since(ledger, submitted - 1), "the run record", 60)[0]

        def held_by(host: str) -> set[str]:
            """The run's train_model tasks that ``host`` received and has not finished."""
            worker = workers[host]
            return ((worker.ids("received", "train_model") - worker.ids("succeeded"))
                    & set(ledger.task_ids(run_id).values()))

        def victim() -> str | None:
            ids = ledger.task_ids(run_id)
            running = {ids[k] for k, s in ledger.task_states(run_id).items() if s == "Running" and k in ids}
            for host in WORKERS:
                held = held_by(host)
                if len(held) == 2 and held <= running and (loss == "killed" or not brpop_clients(cluster, host)):
                    return host
            return None

        lost = poll(victim, "a host running two train_model tasks", 60, interval=0.05)
        survivor = next(h for h in WORKERS if h != lost)
        held = held_by(lost)
        if loss == "killed":
            assert cluster.net.kill_host(lost)
        else:
            cluster.net.cut(lost)
        lost_at = time.time()
        doc = future.result(timeout=150)
    finally:
        if not future.done():  # a failure above: do not wait for the CLI to give up
            cluster.net.kill_host("client")
        executor.shutdown()
    finished_at = time.time()

    assert doc["state"] == "Success" and doc["run_id"] == run_id
    assert doc["results"] == expected_scores(alphas)
    assert_only_evals(cluster, bucket, doc, alphas)

    key_of = {tid: key for key, tid in ledger.task_ids(run_id).items()}
    rows = {row["key"]: row for row in ledger.tasks(run_id, flow.task_keys(len(alphas)))}
    lost_keys = {key_of[tid] for tid in held}
    assert len(lost_keys) == 2 and all(k.startswith("train_model[") for k in lost_keys), lost_keys
    # The lost host's two tasks had begun there; the same messages ran again, whole, on the survivor.
    assert held <= workers[survivor].ids("succeeded")
    for key, row in rows.items():
        assert row["state"] == "Success", row
        assert row["attempts"] == (2 if key in lost_keys else 1), row
    redelivered = min(rows[k]["started"] for k in lost_keys)
    assert redelivered - lost_at >= DEAD_AFTER - 3, "redelivered before the lost worker's heartbeat expired"
    assert redelivered - lost_at < RECOVERY_BOUND, f"redelivered {redelivered - lost_at:.1f} s after the loss"
    if loss == "cut":
        assert cluster.net.pids(lost), "the cut host's worker should still be alive"
        assert not workers[lost].ids("succeeded") & held
    print(f"\n[{loss}] lost {lost} {lost_at - submitted:.1f} s after submission; redelivered after "
          f"{redelivered - lost_at:.1f} s; run done {finished_at - lost_at:.1f} s after the loss "
          f"(total {finished_at - submitted:.1f} s)")


LOST_BOUND = 60.0
"""Seconds from a message lost to a cut host to its run's end, with no restart by hand (issue 18)."""


@needs_hosts
def test_message_popped_by_a_cut_host_is_recovered_within_a_minute(cluster, workers):
    """A message that reaches a host in the second after its cable is pulled is lost; the workers recover it.

    kombu pops a message with BRPOP (1 s timeout) and records it as unacked only once the
    worker has read it. A cut host's pending BRPOP lingers on the server up to a second, and
    Redis hands the next message of that queue to it: it goes into a dead TCP connection and
    is neither in the queue nor unacked, so no visibility timeout brings it back. The run
    then makes no progress; once it was idle for ``PIPELINE_LOST_AFTER`` (default 30 s) with
    none of its messages in the broker and a live worker of its queue, a worker sends its
    unfinished tasks again (pipeline/worker/lost.py): no ``restart`` by hand.

    Made deterministic: the run waits in queue ``lone`` (no consumer) until host-a's cable is
    pulled; then the test moves its message to queue ``host-a``, which only host-a consumes.
    """
    ledger, r = cluster.ledger, cluster.ledger.r
    bucket = cluster.new_bucket()
    env = cluster.env("client", s3=False)
    argv = [sys.executable, CLI, "run", "--alpha", "1.0", "--label", "lone", "--sleep", "0.2",
            "--artifacts", f"s3://{bucket}/prefix", "--no-wait"]
    done = cluster.net.run("client", argv, env=env, cwd=cluster.cwd("client"))
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    assert r.llen("lone") == 1 and ledger.get_run(run_id)["state"] == "Pending"

    unacked = r.hlen("unacked")
    for attempt in range(5):  # host-a's BRPOP may time out between the cut and the move (rare): again
        poll(lambda: brpop_clients(cluster, "host-a"), "host-a's worker blocked in BRPOP", 30, interval=0.01)
        cluster.net.cut("host-a")
        r.rpoplpush("lone", "host-a")
        # Until host-a's BRPOP ends on the server (a 1 s timeout, or the message), then look for the message.
        poll(lambda: not brpop_clients(cluster, "host-a"), "host-a's BRPOP to end", 10)
        if r.llen("host-a") == 0:
            break
        r.rpoplpush("host-a", "lone")
        cluster.net.reconnect("host-a")
    else:
        pytest.fail("host-a's BRPOP never took the message")
    lost_at = time.time()
    assert r.llen("lone") == 0 and r.llen("host-a") == 0 and r.hlen("unacked") == unacked
    assert not workers["host-a"].ids("received") & set(ledger.task_ids(run_id).values())
    old_ids = ledger.task_ids(run_id)

    # A worker for the run's queue comes up on host-b (default settings); nothing arrives, then
    # a worker finds the run's messages gone and sends its tasks again.
    start_workers(cluster, {"host-b": ("lone",)})
    assert ledger.task_states(run_id)["download_dataset"] == "Pending"
    poll(lambda: ledger.get_run(run_id)["state"] == "Success", "the lost run to finish by itself", LOST_BOUND + 30)
    recovered = time.time() - lost_at
    print(f"\n[popped] swallowed at attempt {attempt + 1}; run done {recovered:.1f} s after the message was "
          f"lost, with no restart by hand ({time.time() - float(ledger.get_run(run_id)['created']):.1f} s "
          "after submission)")
    assert recovered < LOST_BOUND, f"the lost run ended {recovered:.1f} s after the loss"
    assert ledger.get_run(run_id)["restarts"] == "1"
    assert all(ledger.task_ids(run_id)[k] != old_ids[k] for k in old_ids)
    assert all(row["attempts"] == 1 for row in ledger.tasks(run_id, flow.task_keys(1)))
    assert_only_evals(cluster, bucket, {"run_id": run_id}, ["1.0"])
