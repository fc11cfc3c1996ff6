"""docker-compose.yml: its shape, and each service's command started locally (no Docker engine here)."""
from __future__ import annotations

import base64
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import redis
import yaml

from conftest import ROOT, free_port, pipeline_env, redis_binary, stop_process
from workers.environments import ENVIRONMENTS

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_redis_persists_and_never_evicts():
    command = SERVICES["redis"]["command"]
    assert command[0] == "redis-server"
    assert ["--appendonly", "yes"] == command[command.index("--appendonly"):command.index("--appendonly") + 2]
    assert "noeviction" in command and "healthcheck" in SERVICES["redis"]


def test_one_worker_per_environment_with_its_command_and_requirements():
    workers = {name: svc for name, svc in SERVICES.items() if name.startswith("worker-")}
    assert set(workers) == {f"worker-{env.name}" for env in ENVIRONMENTS}
    for env in ENVIRONMENTS:
        svc = workers[f"worker-{env.name}"]
        assert svc["command"] == env.worker_command()
        assert svc["build"]["args"]["REQUIREMENTS"] == env.requirements
        assert (ROOT / env.requirements).is_file()
        assert "artifacts:/artifacts" in svc["volumes"]


def test_exactly_one_beat_and_flower_behind_basic_auth():
    beats = [svc for svc in SERVICES.values() if svc.get("command", [])[:3] == ["python", "cli.py", "beat"]]
    assert len(beats) == 1 and beats[0]["deploy"]["replicas"] == 1
    assert "FLOWER_BASIC_AUTH" in SERVICES["flower"]["environment"]
    assert SERVICES["flower"]["command"][:3] == ["python", "cli.py", "flower"]


def test_every_service_is_restarted_when_its_process_dies():
    for name, svc in SERVICES.items():
        assert svc.get("restart") in ("always", "unless-stopped"), f"{name} is not restarted when it dies"


def test_every_service_command_is_in_the_deployment_docs():
    docs = (ROOT / "docs" / "deployment.md").read_text()
    for name, svc in SERVICES.items():
        command = " ".join(svc["command"])
        assert command in docs, f"{name}: {command!r} is not shown in docs/deployment.md"


@pytest.fixture
def compose_redis(tmp_path):
    """The redis service's own command, on a free port in a temp dir."""
    port = free_port()
    argv = [redis_binary(), *SERVICES["redis"]["command"][1:], "--port", str(port), "--dir", str(tmp_path),
            "--save", ""]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, start_new_session=True)
    client = redis.Redis(port=port)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    assert client.config_get("appendonly")["appendonly"] == "yes"
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    yield f"redis://127.0.0.1:{port}/0"
    stop_process(proc)


def _start(name: str, url: str, tmp_path: Path, extra_env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    svc = SERVICES[name]
    command = ["python3" if c == "python" else c for c in svc["command"]]
    if name == "flower":
        command[command.index("--port") + 1] = extra_env["FLOWER_PORT"]
        command[command.index("--address") + 1] = "127.0.0.1"
    log = tmp_path / f"{name}.log"
    env = pipeline_env(url, PIPELINE_ARTIFACTS=str(tmp_path / "artifacts"), PIPELINE_STATE_DIR=str(tmp_path / name),
                       **{k: v for k, v in extra_env.items() if k != "FLOWER_PORT"})
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, log


def _wait(check, proc, log: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        assert proc.poll() is None, log.read_text()
        time.sleep(0.2)
    pytest.fail(f"did not come up:\n{log.read_text()[-3000:]}")


def test_each_service_command_comes_up_locally(compose_redis, tmp_path):
    flower_port = str(free_port())
    extra = {"FLOWER_BASIC_AUTH": "ops:pw", "FLOWER_PORT": flower_port}
    started = []
    try:
        for name in SERVICES:
            if name == "redis":
                continue
            proc, log = _start(name, compose_redis, tmp_path, extra)
            started.append(proc)
            if name.startswith("worker-"):
                _wait(lambda: " ready." in log.read_text(errors="replace"), proc, log)
            elif name == "beat":
                _wait(lambda: "beat: Starting" in log.read_text(errors="replace"), proc, log)
            elif name == "flower":
                def up() -> bool:
                    request = urllib.request.Request(f"http://127.0.0.1:{flower_port}/api/workers")
                    request.add_header("Authorization", "Basic " + base64.b64encode(b"ops:pw").decode())
                    try:
                        return urllib.request.urlopen(request, timeout=2).status == 200
                    except OSError:
                        return False
                _wait(up, proc, log)
    finally:
        for proc in started:
            stop_process(proc)
