"""The stage cache without a broker: what goes into a key, and a store that never serves a damaged entry."""
from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest

from pipeline.cache import key as cache_key
from pipeline.cache.stages import key_params
from pipeline.cache.store import BLOB_GRACE, CacheMiss, CacheStore, Entry
from pipeline.definition import flow

SHA_A, SHA_B = "a" * 64, "b" * 64


def entry_for(key: str, content: bytes = b"model bytes", created: float | None = None) -> tuple[Entry, dict]:
    files = {"model.joblib": {"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}}
    return (Entry(key, "train_model", "model.joblib", files, "run-1", "train_model[0]",
                  created if created is not None else time.time()), {"model.joblib": content})


def test_key_follows_inputs_parameters_code_and_libraries(monkeypatch):
    base = cache_key.stage_key("train_model", {"alpha": "1.0"}, [("train.csv", SHA_A)])
    assert base == cache_key.stage_key("train_model", {"alpha": "1.0"}, [("train.csv", SHA_A)])
    assert len(base) == 64
    assert cache_key.stage_key("train_model", {"alpha": "0.1"}, [("train.csv", SHA_A)]) != base
    assert cache_key.stage_key("train_model", {"alpha": "1.0"}, [("train.csv", SHA_B)]) != base
    assert cache_key.stage_key("train_model", {"alpha": "1.0"}, [("other.csv", SHA_A)]) != base
    assert cache_key.stage_key("evaluate_model", {"alpha": "1.0"}, [("train.csv", SHA_A)]) != base
    monkeypatch.setattr(cache_key, "code_digest", lambda: "0" * 64)
    assert cache_key.stage_key("train_model", {"alpha": "1.0"}, [("train.csv", SHA_A)]) != base
    monkeypatch.undo()
    monkeypatch.setattr(cache_key, "library_versions", lambda: (("python", "3.11.7"), ("numpy", "0.0")))
    assert cache_key.stage_key("train_model", {"alpha": "1.0"}, [("train.csv", SHA_A)]) != base


def test_key_leaves_out_sleep_fail_rate_retries_and_run_id():
    params = {"alphas": [1.0, 0.1], "n_samples": 100, "tick": None, "sleep": 0, "fail_rate": 0, "retries": 0}
    other = {**params, "sleep": 5, "fail_rate": 0.5, "retries": 3, "retry_delay": 2}
    for stage, index in ((flow.DOWNLOAD, None), (flow.PREPROCESS, None), (flow.TRAIN, 1), (flow.EVALUATE, 1)):
        assert key_params(stage, params, index) == key_params(stage, other, index)
    assert key_params(flow.DOWNLOAD, params, None) != key_params(flow.DOWNLOAD, {**params, "n_samples": 200}, None)
    assert key_params(flow.DOWNLOAD, params, None) != key_params(
        flow.DOWNLOAD, {**params, "tick": "2026-11-28T09:01:00+00:00"}, None)
    assert key_params(flow.TRAIN, params, 0) == {"alpha": "1.0"} and key_params(flow.TRAIN, {"alphas": [None]}, 0) == {
        "alpha": None}


def test_code_digest_covers_the_stages_and_their_helpers():
    assert "definition/stages.py" in cache_key.CODE_FILES and "worker/tasks.py" in cache_key.CODE_FILES
    assert "artifacts/rundir.py" in cache_key.CODE_FILES
    assert all((cache_key.PACKAGE_DIR / name).is_file() for name in cache_key.CODE_FILES)


def test_a_key_that_cannot_be_computed_raises(monkeypatch):
    with pytest.raises(cache_key.KeyUnavailable):
        cache_key.stage_key("train_model", {"alpha": float("nan")}, [])
    cache_key.library_versions.cache_clear()
    monkeypatch.setattr(cache_key, "LIBRARIES", ("numpy", "no_such_library_here"))
    try:
        with pytest.raises(cache_key.KeyUnavailable):
            cache_key.library_versions()
    finally:
        cache_key.library_versions.cache_clear()


def test_store_round_trip_and_layout(tmp_path):
    store = CacheStore(tmp_path)
    entry, contents = entry_for("1" * 64)
    store.put(entry, contents)
    got, data = store.get("1" * 64)
    assert got == entry and data == contents
    assert (tmp_path / ".cache" / "entries" / f"{'1' * 64}.json").is_file()
    assert (tmp_path / ".cache" / "blobs" / entry.files["model.joblib"]["sha256"]).read_bytes() == b"model bytes"
    with pytest.raises(CacheMiss, match="no entry"):
        store.get("2" * 64)


@pytest.mark.parametrize("damage", ["blob truncated", "blob altered", "blob missing", "entry garbage",
                                    "entry of another key"])
def test_a_damaged_entry_is_a_miss(tmp_path, damage):
    store = CacheStore(tmp_path)
    key = "3" * 64
    entry, contents = entry_for(key)
    store.put(entry, contents)
    blob = tmp_path / ".cache" / "blobs" / entry.files["model.joblib"]["sha256"]
    record = tmp_path / ".cache" / "entries" / f"{key}.json"
    if damage == "blob truncated":
        blob.write_bytes(b"model")
    elif damage == "blob altered":
        blob.write_bytes(b"MODEL BYTES")
    elif damage == "blob missing":
        blob.unlink()
    elif damage == "entry garbage":
        record.write_text('{"key": "' + key + '", "sta')
    else:
        document = json.loads(record.read_text())
        document["key"] = "4" * 64
        record.write_text(json.dumps(document))
    with pytest.raises(CacheMiss):
        store.get(key)


def test_two_writers_of_one_key_at_once_leave_one_valid_entry(tmp_path):
    store = CacheStore(tmp_path)
    key = "5" * 64
    errors = []

    def fill(n: int) -> None:
        try:
            for _ in range(30):
                store.put(*entry_for(key, b"same result " * 500))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=fill, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got, data = store.get(key)
    assert data["model.joblib"] == b"same result " * 500
    assert list((tmp_path / ".cache" / "tmp").iterdir()) == []  # no temp file left behind


def test_prune_by_age_then_size_then_unused_blobs(tmp_path):
    store = CacheStore(tmp_path)
    now = time.time()
    old, _ = entry_for("6" * 64, b"old" * 100, created=now - 10 * 86400)
    mid, _ = entry_for("7" * 64, b"mid" * 100, created=now - 3600)
    new, _ = entry_for("8" * 64, b"new" * 100, created=now)
    for entry, content in ((old, b"old" * 100), (mid, b"mid" * 100), (new, b"new" * 100)):
        store.put(entry, {"model.joblib": content})
    report = store.prune(older_than=7 * 86400, max_size=400, now=now + BLOB_GRACE + 1)
    assert [e.key for e in store.entries()] == ["8" * 64]
    assert report.entries_removed == 2 and report.entries_kept == 1 and report.bytes_kept == 300
    assert report.blobs_removed == 2 and report.bytes_freed == 600
    assert len(list((tmp_path / ".cache" / "blobs").iterdir())) == 1


def test_prune_keeps_a_fresh_blob_no_entry_names_yet(tmp_path):
    store = CacheStore(tmp_path)
    entry, contents = entry_for("9" * 64)
    store.put(entry, contents)
    (tmp_path / ".cache" / "entries" / f"{'9' * 64}.json").unlink()  # as if its put were still writing it
    assert store.prune().blobs_removed == 0
    assert store.prune(now=time.time() + BLOB_GRACE + 1).blobs_removed == 1
