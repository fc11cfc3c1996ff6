"""The tutorial's five stages as plain Python: names and numbers in, file names out.

They reproduce the tutorial's computation exactly (seeds, file names, printed lines) and
know nothing of Celery: tasks wrap them. Every file is read from and written to the run's
directory (a local folder or an object-store prefix) through
:class:`~pipeline.artifacts.rundir.RunDir`, atomically.
"""
from __future__ import annotations

import random
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from joblib import dump, load
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import train_test_split

from pipeline.artifacts.rundir import RunDir
from pipeline.definition.naming import DEFAULT_N_SAMPLES, MANUAL_SEED, alpha_name, tick_seed, tick_stamp

SPLIT_SEED = 23
"""``random_state`` of the train/test split (the tutorial's)."""


class InjectedFailure(RuntimeError):
    """Raised by ``train_model`` when ``--fail-rate`` says this attempt fails."""


def _save_csv(run_dir: RunDir, name: str, array: np.ndarray) -> None:
    with run_dir.atomic(name) as tmp:
        np.savetxt(tmp, array, delimiter=",")


def _load_csv(run_dir: RunDir, name: str) -> np.ndarray:
    with run_dir.reader(name) as handle:
        return np.loadtxt(handle, delimiter=",")


def download_dataset(
    run_dir: RunDir,
    *,
    n_samples: int = DEFAULT_N_SAMPLES,
    tick: datetime | None = None,
    sleep: float = 0.0,
) -> str:
    """Generate the tutorial's linear dataset; return its file name.

    Manual runs use seed 17 and ``dataset.csv``; a scheduled run (``tick`` given, UTC)
    uses the tick's timestamp as seed and ``dataset_<YYYYMMDDHHmmss>.csv``.
    """
    print("download_dataset begin")
    if tick is None:
        seed, name = MANUAL_SEED, "dataset.csv"
    else:
        print("scheduled_start_time", tick.isoformat())
        seed, name = tick_seed(tick), f"dataset_{tick_stamp(tick)}.csv"
        print("seed", seed)
    random_state = np.random.RandomState(seed=seed)
    a, b = random_state.uniform(-10, 10, 2)
    x_data = random_state.uniform(-10, 10, size=n_samples)
    y_data = a * x_data + b + random_state.uniform(-10, 10, size=n_samples)
    _save_csv(run_dir, name, np.column_stack((x_data, y_data)))
    time.sleep(sleep)
    print("download_dataset end")
    return name


def preprocess_dataset(run_dir: RunDir, dataset_name: str, *, sleep: float = 0.0) -> list[str]:
    """Split the dataset into train and test files; return ``[train, test]`` names."""
    print("preprocess_dataset begin")
    train_name, test_name = f"train_{dataset_name}", f"test_{dataset_name}"
    dataset = _load_csv(run_dir, dataset_name)
    x_train, x_test, y_train, y_test = train_test_split(
        dataset[:, 0], dataset[:, 1], random_state=SPLIT_SEED
    )
    _save_csv(run_dir, train_name, np.column_stack((x_train, y_train)))
    _save_csv(run_dir, test_name, np.column_stack((x_test, y_test)))
    time.sleep(sleep)
    print("preprocess_dataset end")
    return [train_name, test_name]


def train_model(
    run_dir: RunDir,
    train_name: str,
    alpha: float | None,
    *,
    sleep: float = 0.0,
    fail_rate: float = 0.0,
) -> str:
    """Fit Ridge(alpha) (LinearRegression when ``alpha`` is None); return the model's name.

    With ``fail_rate`` p, the attempt raises :class:`InjectedFailure` with probability p.
    """
    print("train_model begin")
    if fail_rate > 0 and random.random() < fail_rate:
        raise InjectedFailure(f"injected failure (fail rate {fail_rate})")
    prefix = "model_" if alpha is None else f"model_{alpha_name(alpha)}_"
    model_name = str(Path(f"{prefix}{train_name}").with_suffix(".joblib"))
    dataset = _load_csv(run_dir, train_name)
    estimator = LinearRegression() if alpha is None else Ridge(alpha=float(alpha))
    model = estimator.fit(dataset[:, 0:1], dataset[:, 1])
    with run_dir.atomic(model_name) as tmp:
        dump(model, tmp)
    time.sleep(sleep)
    print("train_model end")
    return model_name


def evaluate_model(
    run_dir: RunDir, model_name: str, test_name: str, *, sleep: float = 0.0
) -> tuple[str, float]:
    """Score the model (R^2) on the test set; return ``(eval file name, score)``."""
    print("evaluate_model begin")
    eval_name = str(Path(f"eval_{model_name}").with_suffix(".txt"))
    with run_dir.reader(model_name) as handle:
        model = load(handle)
    dataset = _load_csv(run_dir, test_name)
    score = float(model.score(dataset[:, 0:1], dataset[:, 1]))
    with run_dir.atomic(eval_name) as tmp:
        np.savetxt(tmp, [score])
    time.sleep(sleep)
    print("evaluate_model end")
    return eval_name, score


def cleanup_file(run_dir: RunDir, name: str, *, sleep: float = 0.0) -> str:
    """Remove one intermediate file of the run (already gone is fine); return its name."""
    print("cleanup_file begin")
    run_dir.remove(name)
    time.sleep(sleep)
    print("cleanup_file end")
    return name
