"""A RabbitMQ node of the tests' own: ``rabbitmq-server`` on free ports, its data in a temp dir.

Never the machine's node on 5672: the test node has its own name, AMQP port, distribution
port, config file (so /etc/rabbitmq is not read), no plugins, and its Mnesia and logs under
the given directory. It takes seconds to boot, so the tests share one per module.
``consumer_timeout`` is set as docs/reliability.md tells deployments to set it: at least
``PIPELINE_VISIBILITY_TIMEOUT`` (3600 s), the longest a stage or retry delay may hold a message.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from conftest import free_port, stop_process

CONSUMER_TIMEOUT_MS = 3_600_000
"""RabbitMQ's consumer_timeout on the test node (its default is 30 minutes)."""


def rabbitmq_binary() -> str | None:
    """The server script that runs as the calling user (Debian's /usr/sbin one switches to the
    rabbitmq user, which cannot write a root-owned temp dir), else the one on PATH."""
    direct = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
    if direct.exists():
        return str(direct)
    return shutil.which("rabbitmq-server")


@dataclass
class RabbitServer:
    """A running test node."""

    port: int
    proc: subprocess.Popen
    base: Path

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def log(self) -> str:
        return (self.base / "server.log").read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc, timeout=30)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_rabbitmq(base: Path, timeout: float = 120) -> RabbitServer:
    """Boot a node in ``base``; return once it accepts an AMQP login (RuntimeError if it does not)."""
    binary = rabbitmq_binary()
    if binary is None:
        raise RuntimeError("rabbitmq-server is not installed (.ci/run installs it with apt-get)")
    port, dist = free_port(), free_port()
    for sub in ("mnesia", "log", "home"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n"
        f"consumer_timeout = {CONSUMER_TIMEOUT_MS}\n")
    (base / "rabbitmq-env.conf").write_text("")
    (base / "enabled_plugins").write_text("[].\n")
    env = {**os.environ, "HOME": str(base / "home"),
           "RABBITMQ_NODENAME": f"pipelinetest{port}@localhost", "RABBITMQ_DIST_PORT": str(dist),
           "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
           "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
           "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
           "RABBITMQ_MNESIA_BASE": str(base / "mnesia"), "RABBITMQ_LOG_BASE": str(base / "log"),
           "RABBITMQ_LOGS": "-"}
    proc = subprocess.Popen([binary], env=env, cwd=base, stdout=open(base / "server.log", "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    server = RabbitServer(port, proc, base)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if _listening(port) and _logs_in(server.url):
            return server
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"rabbitmq-server on port {port} did not start:\n{server.log()[-3000:]}")


def _logs_in(url: str) -> bool:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.connect()
            return True
    except Exception:
        return False
