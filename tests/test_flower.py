"""Flower as a real process against the test Redis: API with auth, search by run, a browser view."""
from __future__ import annotations

import ast
import base64
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest

from pipeline.definition import flow
from conftest import CLI, ROOT, free_port, needs, pipeline_env, poll, run_cli, stop_process

AUTH = "ops:s3cret"


def get(url: str, auth: str | None = AUTH, timeout: float = 5):
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read().decode()


@pytest.fixture
def flower(clean_redis, worker, tmp_path):
    port = free_port()
    env = pipeline_env(clean_redis.url, FLOWER_BASIC_AUTH=AUTH, PIPELINE_FLOWER_URL=f"http://127.0.0.1:{port}")
    log = open(tmp_path / "flower.log", "wb")
    proc = subprocess.Popen(["python", CLI, "flower", "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if get(f"{base}/api/workers?refresh=1")[0] == 200:
                break
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.time() > deadline or proc.poll() is not None:
            stop_process(proc)
            pytest.fail("flower did not come up:\n" + (tmp_path / "flower.log").read_text())
        time.sleep(0.3)
    yield base, env
    stop_process(proc)


def run_tasks(base: str, run_id: str) -> dict:
    status, body = get(f"{base}/api/tasks?search={quote('kwargs:run_id=' + run_id)}")
    assert status == 200
    return json.loads(body)


def test_flower_lists_every_task_of_a_run_and_refuses_anonymous(flower, tmp_path):
    base, env = flower
    env = {**env, "PIPELINE_ARTIFACTS": str(tmp_path / "art")}
    first = run_cli("sweep", "--alphas", "1.0", "0.1", "0.01", env=env)
    assert first.returncode == 0, first.stderr
    run_id = first.stderr.split("run ", 1)[1].split()[0]
    assert f"follow it in the browser: {base}/runs/{run_id}\n" in first.stderr  # the page answers
    other = json.loads(run_cli("run", "--json", env=env).stdout)["run_id"]
    run_id = first.stderr.split("run ", 1)[1].split()[0]

    # 14 stage tasks, and the fan-out task that sends the cleanups (pipeline/runs/fanout.py)
    tasks = poll(lambda: (t := run_tasks(base, run_id)) and len(t) == 2 + 6 + 6 + 1
                 and all(v["state"] == "SUCCESS" for v in t.values()) and t, "every task of the run in SUCCESS", 30)
    keys = sorted(json.dumps(v["kwargs"]) for v in tasks.values())
    assert all(run_id in k and other not in k for k in keys)
    names = {v["name"] for v in tasks.values()}
    assert names == {f"pipeline.{s}" for s in
                     ("download_dataset", "preprocess_dataset", "train_model", "evaluate_model", "cleanup_file",
                      "fan_out")}
    keys = [ast.literal_eval(v["kwargs"])["key"] for v in tasks.values() if v["name"] != "pipeline.fan_out"]
    assert sorted(keys) == sorted(flow.task_keys(3))  # each task shows its key
    assert all(v["runtime"] is not None and v["runtime"] >= 0 for v in tasks.values())
    assert len(poll(lambda: len(run_tasks(base, other)) == 9 and run_tasks(base, other), "the other run", 30)) == 9

    with pytest.raises(urllib.error.HTTPError) as refused:
        get(f"{base}/api/tasks", auth=None)
    assert refused.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as wrong:
        get(f"{base}/api/tasks", auth="ops:wrong")
    assert wrong.value.code == 401


def test_flower_shows_a_running_task_as_started(flower, tmp_path):
    """STARTED comes from the worker's task-started event (results are not stored), sent in
    the worker's next event batch (pipeline/worker/consumer.py), while the task still runs."""
    base, env = flower
    env = {**env, "PIPELINE_ARTIFACTS": str(tmp_path / "art")}
    run_id = json.loads(run_cli("run", "--sleep", "3", "--no-wait", "--json", env=env).stdout)["run_id"]
    started = poll(lambda: [v for v in run_tasks(base, run_id).values()
                            if v["name"] == "pipeline.download_dataset" and v["state"] == "STARTED"],
                   "download_dataset STARTED in Flower", 10)
    assert started[0]["started"] is not None
    done = poll(lambda: [v for v in run_tasks(base, run_id).values()
                         if v["name"] == "pipeline.download_dataset" and v["state"] == "SUCCESS"],
                "download_dataset SUCCESS in Flower", 20)
    assert done[0]["runtime"] >= 3


@needs(None if shutil.which("chromium") else "Debian's chromium is not installed (.ci/run installs it)")
def test_tasks_page_in_headless_chromium(flower, tmp_path):
    base, env = flower
    env = {**env, "PIPELINE_ARTIFACTS": str(tmp_path / "art")}
    result = run_cli("run", "--alpha", "0.5", "--json", env=env)
    run_id = json.loads(result.stdout)["run_id"]
    poll(lambda: len(run_tasks(base, run_id)) == 9, "the run's 8 tasks and its fan-out in Flower", 30)
    url = base.replace("http://", f"http://{AUTH}@") + "/tasks?name=pipeline.train_model"
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=8000", "--dump-dom", url],
        capture_output=True, text=True, timeout=90).stdout
    (tmp_path / "dom.html").write_text(dom)
    assert "pipeline.train_model" in dom
    assert run_id in dom, tmp_path / "dom.html"
