"""Stages as plain Python, checked against an independent copy of the tutorial's code."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import train_test_split

from pipeline.definition import stages
from pipeline.artifacts.rundir import RunDir, UnsafePathError


def tutorial_score(seed: int, n: int, alpha: float | None) -> float:
    """The tutorial's computation, in memory, written out independently of pipeline/."""
    rs = np.random.RandomState(seed=seed)
    a, b = rs.uniform(-10, 10, 2)
    x = rs.uniform(-10, 10, size=n)
    y = a * x + b + rs.uniform(-10, 10, size=n)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, random_state=23)
    model = LinearRegression() if alpha is None else Ridge(alpha=alpha)
    model.fit(x_tr.reshape(-1, 1), y_tr)
    return float(model.score(x_te.reshape(-1, 1), y_te))


def run_all(run_dir: RunDir, alpha, **kw) -> tuple[list[str], str, float]:
    dataset = stages.download_dataset(run_dir, **kw)
    train, test = stages.preprocess_dataset(run_dir, dataset)
    model = stages.train_model(run_dir, train, alpha)
    eval_name, score = stages.evaluate_model(run_dir, model, test)
    return [dataset, train, test, model], eval_name, score


def test_linear_run_reproduces_the_tutorial_value_exactly(tmp_path, capsys):
    run_dir = RunDir(tmp_path, "r1")
    files, eval_name, _ = run_all(run_dir, None)
    assert files == ["dataset.csv", "train_dataset.csv", "test_dataset.csv", "model_train_dataset.joblib"]
    assert eval_name == "eval_model_train_dataset.txt"
    assert run_dir.resolve(eval_name).read_text().strip() == "9.655153179853411816e-01"
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{s} {w}" for s in ("download_dataset", "preprocess_dataset", "train_model", "evaluate_model")
                   for w in ("begin", "end")]


@pytest.mark.parametrize("alpha", [1.0, 0.1, 1e-05, 0.0])
def test_ridge_matches_independent_computation(tmp_path, alpha):
    run_dir = RunDir(tmp_path, "r2")
    files, eval_name, score = run_all(run_dir, alpha, n_samples=250)
    assert files[3] == f"model_{float(alpha)}_train_dataset.joblib"
    assert eval_name == f"eval_model_{float(alpha)}_train_dataset.txt"
    assert score == tutorial_score(17, 250, alpha)
    assert float(np.loadtxt(run_dir.resolve(eval_name))) == score


def test_scheduled_download_uses_tick_seed_and_stamp(tmp_path, capsys):
    tick = datetime(2026, 11, 28, 9, 1, tzinfo=timezone.utc)
    run_dir = RunDir(tmp_path, "tick-20261128090100")
    files, eval_name, score = run_all(run_dir, 1.0, tick=tick)
    assert files[0] == "dataset_20261128090100.csv"
    assert files[3] == "model_1.0_train_dataset_20261128090100.joblib"
    assert eval_name == "eval_model_1.0_train_dataset_20261128090100.txt"
    assert score == tutorial_score(int(tick.timestamp()), 100, 1.0)
    out = capsys.readouterr().out
    assert "scheduled_start_time 2026-11-28T09:01:00+00:00" in out and f"seed {int(tick.timestamp())}" in out


def test_cleanup_removes_one_file(tmp_path, capsys):
    run_dir = RunDir(tmp_path, "r3")
    stages.download_dataset(run_dir)
    assert stages.cleanup_file(run_dir, "dataset.csv") == "dataset.csv"
    assert run_dir.listing() == []
    assert "cleanup_file begin\ncleanup_file end" in capsys.readouterr().out


def test_fail_rate_one_always_raises(tmp_path):
    run_dir = RunDir(tmp_path, "r4")
    train, _ = stages.preprocess_dataset(run_dir, stages.download_dataset(run_dir))
    with pytest.raises(stages.InjectedFailure):
        stages.train_model(run_dir, train, 1.0, fail_rate=1.0)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    run_dir = RunDir(tmp_path, "r5")
    with pytest.raises(RuntimeError):
        with run_dir.atomic("x.csv") as tmp:
            tmp.write(b"half")
            raise RuntimeError("killed")
    assert run_dir.listing() == []
    assert list((tmp_path / ".tmp").iterdir()) == []


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "..", "a/b", "", "x\x00y"])
def test_names_outside_the_run_dir_are_refused(tmp_path, name):
    with pytest.raises(UnsafePathError):
        RunDir(tmp_path, "r6").resolve(name)


@pytest.mark.parametrize("run_id", ["../x", "a b", "x" * 65, "", "a/b"])
def test_bad_run_ids_are_refused(tmp_path, run_id):
    with pytest.raises(ValueError):
        RunDir(tmp_path, run_id)
