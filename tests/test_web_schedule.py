"""/schedule and ``schedule pause|resume|show`` with a real beat, worker, Redis and Flower.

Paused, beat's ticks reach the scheduled-run task and create no runs; resumed, the next
tick creates its run. The page's switch and the CLI's act on the same record.
"""
from __future__ import annotations

import json

import pytest

from conftest import pipeline_env, poll, run_cli, start_flower, stop_process
from test_schedule_integration import LABEL, sched, sched_artifacts, sched_worker, start_beat  # noqa: F401 (fixtures)
from test_web import Browser, web, web_server  # noqa: F401 (fixtures)

INTERVAL = {"PIPELINE_BEAT_INTERVAL": "2", "PIPELINE_SCHEDULE_LABEL": LABEL}


@pytest.mark.slow
def test_paused_ticks_create_no_runs_and_resume_from_the_page(sched, clean_redis, sched_worker, tmp_path):  # noqa: F811
    env = pipeline_env(clean_redis.url, **INTERVAL)
    proc, base, _env = start_flower(clean_redis.url, tmp_path / "flower.log", **INTERVAL)
    beat = None
    try:
        browser = Browser(base)
        paused = run_cli("schedule", "pause", env=env)
        assert paused.returncode == 0 and paused.stdout.strip() == "schedule paused: ticks create no runs"
        assert browser.json("/api/schedule")["paused"] is True

        beat, _log = start_beat(clean_redis.url, tmp_path, "beat")
        doc = poll(lambda: (d := browser.json("/api/schedule")) and len(d["ticks"]) >= 2 and d, "two paused ticks", 60)
        assert doc["beat_alive"] is True
        assert all(t["paused"] and t["run_id"] is None for t in doc["ticks"]), doc["ticks"]
        assert not [r for r in browser.json("/api/runs") if r["run_id"].startswith("tick-")]
        assert "paused: no run" in browser.get("/schedule")[2]

        token = browser.xsrf("/schedule")
        status, headers, _body = browser.request("/schedule/resume", data={"_xsrf": token})
        assert status == 303 and headers["Location"] == "/schedule"
        assert "schedule resumed" in browser.get("/schedule")[2]
        made = poll(lambda: [t for t in browser.json("/api/schedule")["ticks"] if t["run_id"]], "a tick's run", 60)
        run_id = made[0]["run_id"]
        assert run_id.startswith("tick-")
        poll(lambda: browser.json(f"/api/runs/{run_id}")["state"] == "Success", "the tick's run Success", 60)

        status, _headers, _body = browser.request("/schedule/pause", data={"_xsrf": token})
        assert status == 303
        shown = run_cli("schedule", "show", "--json", env=env)
        assert shown.returncode == 0 and json.loads(shown.stdout)["paused"] is True
        assert "PAUSED since" in run_cli("schedule", "show", env=env).stdout
    finally:
        if beat is not None:
            stop_process(beat)
        stop_process(proc)


def test_backfill_form_runs_the_cli_backfill_and_refuses_what_it_refuses(web, clean_redis):  # noqa: F811
    browser, env = web
    token = browser.xsrf("/schedule")
    browser.request("/schedule/backfill", data={"_xsrf": token, "start": "2026-11-28T09:05", "end": "2026-11-28T09:00"})
    page = browser.get("/schedule")[2]
    cli = run_cli("backfill", "--start", "2026-11-28T09:05", "--end", "2026-11-28T09:00", env=env)
    assert cli.returncode == 2 and cli.stderr.strip().replace("'", "&#x27;").replace(">", "&gt;") in page
    assert not browser.json("/api/runs")

    browser.request("/schedule/backfill", data={"_xsrf": token, "start": "2026-11-28T09:00",
                                                 "end": "2026-11-28T09:01", "alphas": "1.0"})
    page = browser.get("/schedule")[2]
    assert "backfill 2026-11-28T09:00:00Z .. 2026-11-28T09:01:00Z: 2 ticks, 2 created, 0 skipped" in page
    ids = sorted(r["run_id"] for r in browser.json("/api/runs"))
    assert ids == ["tick-20261128090000", "tick-20261128090100"]
    for run_id in ids:
        poll(lambda: browser.json(f"/api/runs/{run_id}")["state"] == "Success", f"{run_id} Success", 60)
