"""Hosts made of Linux network namespaces, for tests that need several machines.

:class:`HostNet` builds a private network that lives only inside namespaces it creates:
a "switch" namespace holding a bridge, and one namespace per host, each with a loopback
and an ``eth0`` (one end of a veth pair whose other end is a port of the bridge) carrying
one address of a private /24. The veth pairs are created directly inside those namespaces;
nothing is added to the root namespace, and no namespace has a route anywhere else, so
every packet stays between the hosts.

Names are prefixed with ``pl<pid>`` so that concurrent test sessions never collide.
:meth:`HostNet.destroy` kills every process still inside the namespaces (all started by
the test) and deletes the namespaces, which removes the veths and the bridge with them.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None when they can): not root, no ``ip``, or a refusal."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"pl{os.getpid()}-probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    try:
        veth = _ip("-n", probe, "link", "add", "a0", "type", "veth", "peer", "name", "a1", check=False)
        bridge = _ip("-n", probe, "link", "add", "b0", "type", "bridge", check=False)
    finally:
        _ip("netns", "del", probe, check=False)
    for what, result in (("a veth pair", veth), ("a bridge", bridge)):
        if result.returncode != 0:
            return f"cannot create {what} in a namespace: {result.stderr.strip()}"
    return None


_OURS = re.compile(r"^pl(\d+)-(switch|probe)$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_stale() -> list[str]:
    """Delete what a test session killed outright left behind; return the namespaces removed.

    A session's namespaces are ``pl<pid>-*`` next to its ``pl<pid>-switch`` (or probe); when
    that pid is gone, its processes still inside them are killed and the namespaces deleted.
    """
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    names = [line.split()[0] for line in listed if line.strip()]
    dead = {m.group(1) for m in map(_OURS.match, names) if m and not _alive(int(m.group(1)))}
    removed = [name for name in names if any(name.startswith(f"pl{pid}-") for pid in dead)]
    for name in removed:
        for pid in _ip("netns", "pids", name, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        _ip("netns", "del", name, check=False)
    return removed


class HostNet:
    """A private /24 joining named hosts (network namespaces) through a bridge."""

    def __init__(self, hosts: Sequence[str], subnet: int | None = None) -> None:
        self.prefix = f"pl{os.getpid()}"
        self.subnet = subnet if subnet is not None else 16 + os.getpid() % 224
        self.hosts = list(hosts)
        self.switch = f"{self.prefix}-switch"
        self.procs: list[subprocess.Popen] = []
        self.made: list[str] = []
        self.down: set[str] = set()

    def ns(self, host: str) -> str:
        """The namespace name of ``host``."""
        return f"{self.prefix}-{host}"

    def addr(self, host: str) -> str:
        """The IPv4 address of ``host`` (10.213.<subnet>.<position + 1>)."""
        return f"10.213.{self.subnet}.{self.hosts.index(host) + 1}"

    def create(self) -> "HostNet":
        """Make the switch, the hosts and their links; on any error undo everything and raise."""
        try:
            self._add_ns(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            for position, host in enumerate(self.hosts):
                ns = self.ns(host)
                self._add_ns(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
                port = f"p{position}"
                _ip("link", "add", "name", "eth0", "netns", ns, "type", "veth", "peer", "name", port,
                    "netns", self.switch)
                _ip("-n", self.switch, "link", "set", port, "master", "br0")
                _ip("-n", self.switch, "link", "set", port, "up")
                _ip("-n", ns, "addr", "add", f"{self.addr(host)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
        except BaseException:
            self.destroy()
            raise
        return self

    def _add_ns(self, name: str) -> None:
        _ip("netns", "add", name)
        self.made.append(name)

    def argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside ``host`` (``ip netns exec`` execs it: the pid is the command's)."""
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def start(self, host: str, argv: Sequence[str], log: Path, env: dict[str, str],
              cwd: Path | None = None) -> subprocess.Popen:
        """Start ``argv`` on ``host`` in its own session, output to ``log``; it is killed by destroy()."""
        with open(log, "wb") as handle:
            proc = subprocess.Popen(self.argv(host, argv), stdout=handle, stderr=subprocess.STDOUT, env=env,
                                    cwd=cwd, start_new_session=True)
        self.procs.append(proc)
        return proc

    def run(self, host: str, argv: Sequence[str], env: dict[str, str], cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``argv`` on ``host`` to completion and capture its output."""
        return subprocess.run(self.argv(host, argv), env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout)

    def cut(self, host: str) -> None:
        """Pull ``host``'s cable: its eth0 goes down inside the host."""
        _ip("-n", self.ns(host), "link", "set", "eth0", "down")
        self.down.add(host)

    def reconnect(self, host: str) -> None:
        """Plug ``host``'s cable back in."""
        _ip("-n", self.ns(host), "link", "set", "eth0", "up")
        self.down.discard(host)

    def pids(self, host: str) -> list[int]:
        """Processes inside ``host``'s namespace."""
        listed = _ip("netns", "pids", self.ns(host), check=False).stdout.split()
        return [int(pid) for pid in listed if pid.isdigit()]

    def kill_host(self, host: str) -> list[int]:
        """SIGKILL every process on ``host`` (its machine lost power); return their pids."""
        pids = self.pids(host)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    def destroy(self) -> None:
        """Kill what runs inside the namespaces, then delete them (veths and bridge go with them)."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    proc.kill()
        for name in self.made:
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.time() + 10
        for name in reversed(self.made):
            while _ip("netns", "del", name, check=False).returncode != 0 and time.time() < deadline:
                time.sleep(0.1)
        self.made = [name for name in self.made if Path("/run/netns", name).exists()]
        self.procs = []
