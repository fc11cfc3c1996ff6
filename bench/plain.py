"""The floor: the same stage functions called one after another in this process."""
from __future__ import annotations

import os
import secrets
import shutil
from contextlib import redirect_stderr
from pathlib import Path

from pipeline.runs.local import run_local
from pipeline.runs.submit import RunRequest


def run_plain(root: Path, alphas: list[float], n_samples: int = 100, sleep: float = 0.0) -> dict[str, float]:
    """Run the whole flow sequentially with :func:`pipeline.runs.local.run_local`; printed lines dropped."""
    run_id = f"plain-{secrets.token_hex(4)}"
    request = RunRequest(alphas=list(alphas), artifacts_root=root, n_samples=n_samples, sleep=sleep)
    with open(os.devnull, "w") as devnull, redirect_stderr(devnull):
        results = run_local(request, run_id)
    shutil.rmtree(root / run_id, ignore_errors=True)
    return results
