"""The runtime requirements cover what the code imports, and carry no test or lint tools.

The Docker image installs requirements.txt alone, so a module of ``pipeline/`` importing a
package that only requirements-dev.txt lists would break it; a test tool in
requirements.txt would bloat every image and worker host.
"""
from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions

from conftest import ROOT

LOCAL = {"pipeline", "beat_schedule", "workers", "cli"}
TEST_TOOLS = {"pytest", "pytest-timeout", "pytest-xdist", "moto", "ruff", "pyyaml", "boto3"}


def requirement_names(path) -> set[str]:
    """Distribution names of a requirements file (lowercased, no extras, pins or ``-r`` lines)."""
    names = set()
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "-")):
            names.add(re.split(r"[\[=<>!~; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def runtime_imports() -> set[str]:
    """Top-level names of the third-party modules the shipped code imports."""
    files = [*ROOT.glob("pipeline/**/*.py"), ROOT / "cli.py", ROOT / "beat_schedule.py"]
    found = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - LOCAL - set(sys.stdlib_module_names)


def test_every_runtime_import_is_a_runtime_requirement():
    runtime = requirement_names(ROOT / "requirements.txt")
    dists = packages_distributions()
    missing = {}
    for module in sorted(runtime_imports()):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not names & runtime:
            missing[module] = sorted(names)
    assert not missing, f"imported by the shipped code but not in requirements.txt: {missing}"


def test_runtime_requirements_carry_no_test_tools():
    assert not requirement_names(ROOT / "requirements.txt") & TEST_TOOLS


def test_dev_requirements_are_the_runtime_plus_the_test_tools():
    text = (ROOT / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in text.splitlines()
    assert {"pytest", "pytest-timeout", "moto", "ruff"} <= requirement_names(ROOT / "requirements-dev.txt")
