"""A RabbitMQ node of the tests' own: ``rabbitmq-server`` on free ports, its data in a temp dir.

Never the machine's node on 5672: the test node has its own name, AMQP port, distribution
port, config file (so /etc/rabbitmq is not read), no plugins, and its Mnesia and logs under
the given directory. It takes seconds to boot, so the tests share one per module.
The node runs with docker-compose.rabbitmq.yml's ``RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS``
(``consumer_timeout`` raised to ``PIPELINE_VISIBILITY_TIMEOUT``, docs/reliability.md), so the
tests run against the deployment's setting and prove its syntax on a real node.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from conftest import ROOT, free_port, stop_process

COMPOSE_RABBITMQ = yaml.safe_load((ROOT / "docker-compose.rabbitmq.yml").read_text())["services"]["rabbitmq"]
"""The compose variant's RabbitMQ service."""

ERL_ARGS = COMPOSE_RABBITMQ["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
"""The node's extra Erlang arguments, the compose variant's."""


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
    env: dict[str, str]
    """The environment the node runs with (its name, cookie home...), for rabbitmqctl."""

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def log(self) -> str:
        return (self.base / "server.log").read_text(errors="replace")

    def ctl(self, *args: str) -> str:
        """``rabbitmqctl -n NODE ARGS``'s output (RuntimeError if it fails)."""
        ctl = str(Path(rabbitmq_binary()).with_name("rabbitmqctl"))
        done = subprocess.run([ctl, "-n", self.env["RABBITMQ_NODENAME"], *args], env=self.env,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

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
        f"listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n")
    (base / "rabbitmq-env.conf").write_text("")
    (base / "enabled_plugins").write_text("[].\n")
    env = {**os.environ, "HOME": str(base / "home"),
           "RABBITMQ_NODENAME": f"pipelinetest{port}@localhost", "RABBITMQ_DIST_PORT": str(dist),
           "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
           "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
           "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
           "RABBITMQ_MNESIA_BASE": str(base / "mnesia"), "RABBITMQ_LOG_BASE": str(base / "log"),
           "RABBITMQ_LOGS": "-", "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": ERL_ARGS}
    proc = subprocess.Popen([binary], env=env, cwd=base, stdout=open(base / "server.log", "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    server = RabbitServer(port, proc, base, env)
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
