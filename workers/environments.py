"""The worker environments: each a name, the queues it consumes, its requirements, its command.

An environment is one kind of worker host or container: a Python installation built from
its requirements file, running ``python cli.py worker --label <queue> ...`` so that it
consumes only the queues of the runs it can execute (``--label <queue>`` on ``run`` and
``sweep`` routes a run there). ``docker-compose.yml`` starts one worker per environment
with :func:`worker_command`; ``python -m workers.environments`` prints them all.

To add one, append an :class:`Environment` to :data:`ENVIRONMENTS` and add its
requirements file next to this module (see workers/README.md).
"""
from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import WORKER_POOLS
from pipeline.validation import LABEL_PATTERN

WORKERS_DIR = Path(__file__).resolve().parent
"""This directory (``workers/``)."""

PROJECT_ROOT = WORKERS_DIR.parent
"""The directory holding ``cli.py``; commands run from there."""



@dataclass(frozen=True)
class Environment:
    """One kind of worker: where it runs, what it consumes, how it is started."""

    name: str
    """Short name, e.g. ``sklearn-1.x``; also the docker-compose service suffix."""
    queues: tuple[str, ...]
    """Queues (labels) its workers consume; a run with ``--label Q`` needs one consuming Q."""
    requirements: str
    """Requirements file, relative to the project root."""
    description: str = ""
    """What the environment is for."""
    pool: str = WORKER_POOLS[0]
    """Execution pool of its workers."""
    concurrency: int | None = None
    """Worker slots (None: one per CPU)."""

    def __post_init__(self) -> None:
        if not self.queues:
            raise ValueError(f"environment {self.name!r} consumes no queue")
        for queue in self.queues:
            if not LABEL_PATTERN.match(queue):
                raise ValueError(f"environment {self.name!r}: {queue!r} is not a valid queue name")
        if self.pool not in WORKER_POOLS:
            raise ValueError(f"environment {self.name!r}: unknown pool {self.pool!r}")

    @property
    def requirements_path(self) -> Path:
        """Absolute path of the requirements file."""
        return PROJECT_ROOT / self.requirements

    def worker_args(self) -> list[str]:
        """Arguments after ``python``: ``cli.py worker --label Q ... --pool P [--concurrency N]``."""
        args = ["cli.py", "worker"]
        for queue in self.queues:
            args += ["--label", queue]
        args += ["--pool", self.pool]
        if self.concurrency:
            args += ["--concurrency", str(self.concurrency)]
        return args

    def worker_command(self, python: str = "python") -> list[str]:
        """The worker command as argv, run from the project root (``python`` as given)."""
        return [python, *self.worker_args()]


ENVIRONMENTS: tuple[Environment, ...] = (
    Environment(
        name="default",
        queues=("default",),
        requirements="requirements.txt",
        description="The project's own pins; runs without --label land here.",
    ),
    Environment(
        name="sklearn-1.x",
        queues=("sklearn-1",),
        requirements="workers/requirements-sklearn-1.txt",
        description="A scikit-learn 1.x worker: submit with --label sklearn-1.",
    ),
)
"""Every declared environment; names and queues are unique."""


def get(name: str) -> Environment:
    """The environment called ``name`` (KeyError naming the known ones otherwise)."""
    for env in ENVIRONMENTS:
        if env.name == name:
            return env
    raise KeyError(f"no environment {name!r}; known: {', '.join(e.name for e in ENVIRONMENTS)}")


def worker_commands(python: str = "python") -> dict[str, str]:
    """Environment name -> its worker command as one shell line (for docker-compose and the README)."""
    return {env.name: shlex.join(env.worker_command(python)) for env in ENVIRONMENTS}


def environment_for_queue(queue: str) -> Environment | None:
    """The declared environment consuming ``queue``, if any."""
    return next((env for env in ENVIRONMENTS if queue in env.queues), None)


def _check_unique() -> None:
    names = [env.name for env in ENVIRONMENTS]
    queues = [q for env in ENVIRONMENTS for q in env.queues]
    if len(set(names)) != len(names) or len(set(queues)) != len(queues):
        raise ValueError("environment names and queues must be unique")


_check_unique()


def main() -> int:
    """Print each environment: name, queues, requirements, worker command."""
    for env in ENVIRONMENTS:
        print(f"{env.name}: queues {', '.join(env.queues)}; requirements {env.requirements}")
        print(f"    {shlex.join(env.worker_command())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
