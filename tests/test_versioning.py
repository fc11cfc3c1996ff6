"""Flow versions grow when the pipeline's code changes, and only then."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, pipeline_env, run_cli
from pipeline.ledger import versions as versioning
SOURCE = '''
def train(x, alpha=1.0):
    """Fit."""
    return x * alpha
'''


def test_digest_ignores_comments_layout_and_docstrings_but_not_code():
    base = versioning.definition_digest([SOURCE])
    cosmetic = '''# a comment
def train(x,
          alpha=1.0):  # another
    """Fit the model, documented at length."""

    return x * alpha   # trailing
'''
    assert versioning.definition_digest([cosmetic]) == base
    assert versioning.definition_digest([SOURCE.replace("alpha=1.0", "alpha=2.0")]) != base
    assert versioning.definition_digest([SOURCE.replace("x * alpha", "alpha * x")]) != base
    assert versioning.definition_digest([SOURCE, ""]) != base  # which file holds what matters


def copy_project(dest: Path) -> Path:
    """cli.py and pipeline/ copied to ``dest`` (a second installation to edit)."""
    dest.mkdir()
    shutil.copy(ROOT / "cli.py", dest / "cli.py")
    shutil.copytree(ROOT / "pipeline", dest / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_package_digest_of_a_copy_follows_code_changes_only(tmp_path):
    copy = copy_project(tmp_path / "copy")
    assert versioning.package_digest(copy / "pipeline" / "definition") == versioning.current_digest()
    edit(copy / "pipeline" / "definition" / "stages.py", "def cleanup_file(", "# cleanup, reformatted\ndef   cleanup_file(")
    assert versioning.package_digest(copy / "pipeline" / "definition") == versioning.current_digest()
    edit(copy / "pipeline" / "definition" / "canvas.py", "immutable=True", "immutable=True, priority=1")
    assert versioning.package_digest(copy / "pipeline" / "definition") != versioning.current_digest()


def test_registry_gives_a_new_number_to_a_new_digest_only(clean_redis):
    client = clean_redis.client()
    first = versioning.register(client, "a" * 64)
    assert versioning.register(client, "a" * 64) == first
    second = versioning.register(client, "b" * 64)
    assert (first["version"], second["version"]) == (1, 2)
    assert second["first_seen"] >= first["first_seen"]


def submit(cli: Path, env: dict) -> str:
    """``run --no-wait`` through the installation at ``cli`` (to a queue no worker reads)."""
    result = subprocess.run([sys.executable, str(cli), "run", "--no-wait", "--label", "nobody-consumes-this"],
                            env=env, cwd=cli.parent, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_runs_record_the_version_and_flows_lists_them(clean_redis, tmp_path):
    env = pipeline_env(clean_redis.url, PIPELINE_ARTIFACTS=str(tmp_path / "artifacts"))
    changed = copy_project(tmp_path / "changed")
    edit(changed / "pipeline" / "definition" / "stages.py", 'print("cleanup_file end")', 'print("cleanup_file", "end")')

    ids = [submit(ROOT / "cli.py", env), submit(changed / "cli.py", env)]
    client = clean_redis.client()
    assert [client.hget(f"pipeline:run:{run_id}", "version") for run_id in ids] == ["1", "2"]

    result = run_cli("flows", "--json", env=env)
    assert result.returncode == 0, result.stderr
    versions = json.loads(result.stdout)
    assert [(v["version"], v["runs"], v["current"]) for v in versions] == [(1, 1, True), (2, 1, False)]
    assert versions[0]["first_seen"].endswith("Z") and versions[0]["digest"] == versioning.current_digest()
