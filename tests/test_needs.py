"""A test that needs a missing tool or privilege skips on a developer's machine and fails on CI."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import pipeline_env, skips_allowed

TESTS = Path(__file__).resolve().parent

NEEDY = '''
import importlib.util
import sys

spec = importlib.util.spec_from_file_location("pipeline_conftest", {conftest!r})
shared = sys.modules["pipeline_conftest"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(shared)
pytest_runtest_setup = shared.pytest_runtest_setup
'''

TESTS_BODY = '''
from pipeline_conftest import needs

@needs("the frobnicator is not installed")
def test_lacking():
    pass

@needs(None)
def test_having():
    pass
'''


@pytest.mark.parametrize(("env", "allowed"), [({}, True), ({"CI": "1"}, False), ({"CI": "true"}, False),
                                              ({"CI": "0"}, True), ({"CI": "1", "PIPELINE_TEST_ALLOW_SKIP": "1"}, True)])
def test_skips_allowed(env, allowed):
    assert skips_allowed(env) is allowed


@pytest.mark.parametrize(("extra", "outcome"), [({}, "1 passed, 1 skipped"), ({"CI": "1"}, "1 passed, 1 error"),
                                                ({"CI": "1", "PIPELINE_TEST_ALLOW_SKIP": "1"}, "1 passed, 1 skipped")])
def test_a_missing_need_skips_off_ci_and_fails_on_ci(tmp_path, extra, outcome):
    """On CI the lacking test errors in its setup (red), naming what it lacks."""
    (tmp_path / "conftest.py").write_text(NEEDY.format(conftest=str(TESTS / "conftest.py")))
    (tmp_path / "test_needy.py").write_text(TESTS_BODY)
    env = {k: v for k, v in pipeline_env("redis://unused").items() if k not in ("CI", "PIPELINE_TEST_ALLOW_SKIP")}
    env.update(extra, PYTHONPATH=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                             "-W", "ignore::pytest.PytestUnknownMarkWarning", "test_needy.py"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert outcome in result.stdout, result.stdout + result.stderr
    assert "the frobnicator is not installed" in result.stdout
