"""Tick arithmetic and the tick scheduler, without a broker (no message is sent)."""
from __future__ import annotations

import calendar
from datetime import datetime, timedelta, timezone

import pytest
from celery import Celery
from celery.beat import ScheduleEntry, Scheduler
from celery.schedules import crontab

import beat_schedule
from pipeline.schedule import tick_runs
from pipeline.schedule import ticks
from pipeline.schedule.ticks import tick_run_id
from pipeline.schedule.scheduler import SCHEDULED_TASK, TickScheduler, entry_tick, every, stamp_options
from pipeline.settings import Settings
from pipeline.definition.naming import tick_seed, tick_stamp
from pipeline.validation import BadInput

UTC = timezone.utc
T = datetime(2026, 11, 28, 9, 1, tzinfo=UTC)


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_tick_identity_against_an_independent_computation():
    # 2026-11-28 09:01:00 UTC, counted by hand from the epoch with the calendar module.
    expected_seed = calendar.timegm((2026, 11, 28, 9, 1, 0, 0, 0, 0))
    assert expected_seed == 1795856460
    assert tick_seed(T) == expected_seed
    assert tick_stamp(T) == "20261128090100"
    assert tick_run_id(T) == "tick-20261128090100"
    # The same moment written in another zone is the same tick.
    other_zone = datetime(2026, 11, 28, 18, 1, tzinfo=timezone(timedelta(hours=9)))
    assert tick_run_id(ticks.utc(other_zone)) == "tick-20261128090100"
    request = tick_runs.tick_request(T, alphas=[1.0, 0.1], artifacts_root="/tmp/x")
    assert request.tick == T and request.params()["tick"] == "2026-11-28T09:01:00+00:00"
    assert request.alphas == [1.0, 0.1] and request.queue == "default"


def test_floor_and_ceil_on_the_grid():
    assert ticks.floor_tick(at(2026, 11, 28, 9, 1, 59)) == T
    assert ticks.floor_tick(T) == T and ticks.ceil_tick(T) == T
    assert ticks.ceil_tick(at(2026, 11, 28, 9, 0, 1)) == T
    assert ticks.floor_tick(at(2026, 11, 28, 9, 1, 5), 2) == at(2026, 11, 28, 9, 1, 4)
    naive = datetime(2026, 11, 28, 9, 1, 30)
    assert ticks.floor_tick(naive) == T  # naive means UTC


def test_ticks_between_inclusive_and_refusals():
    now = at(2026, 11, 28, 12, 0)
    got = ticks.ticks_between(at(2026, 11, 28, 9, 0), at(2026, 11, 28, 9, 5), now)
    assert [tick_stamp(t) for t in got] == [f"2026112809{m:02d}00" for m in range(6)]
    assert [t.minute for t in got] == [0, 1, 2, 3, 4, 5] and all(t.second == 0 for t in got)
    # a partial minute at either end: only whole minutes inside count
    got = ticks.ticks_between(at(2026, 11, 28, 9, 0, 30), at(2026, 11, 28, 9, 2, 30), now)
    assert [t.minute for t in got] == [1, 2]
    assert len(ticks.ticks_between(now - timedelta(minutes=1439), now, now)) == 1440
    with pytest.raises(BadInput, match="at most 1440"):
        ticks.ticks_between(now - timedelta(minutes=1440), now, now)
    with pytest.raises(BadInput, match="after end"):
        ticks.ticks_between(at(2026, 11, 28, 9, 5), at(2026, 11, 28, 9, 0), now)
    with pytest.raises(BadInput, match="in the future"):
        ticks.ticks_between(at(2026, 11, 28, 11, 59), at(2026, 11, 28, 12, 1), now)
    with pytest.raises(BadInput, match="no tick"):
        ticks.ticks_between(at(2026, 11, 28, 9, 0, 10), at(2026, 11, 28, 9, 0, 50), now)


def test_parse_time_zones():
    assert ticks.parse_time("2026-11-28T09:01", "start") == T
    assert ticks.parse_time("2026-11-28T09:01:00Z", "start") == T
    assert ticks.parse_time("2026-11-28T18:01+09:00", "start") == T
    with pytest.raises(BadInput, match="'yesterday'"):
        ticks.parse_time("yesterday", "start")


def test_every_is_aligned_and_does_not_drift():
    clock = {"now": at(2026, 11, 28, 9, 0, 1, 300000)}
    sched = every(2, nowfun=lambda: clock["now"])
    assert sched.due_after(at(2026, 11, 28, 9, 0, 1, 300000)) == at(2026, 11, 28, 9, 0, 2)
    assert sched.due_after(at(2026, 11, 28, 9, 0, 2)) == at(2026, 11, 28, 9, 0, 4)
    due, wait = sched.is_due(at(2026, 11, 28, 9, 0, 0, 500000))
    assert not due and wait == pytest.approx(0.7)
    clock["now"] = at(2026, 11, 28, 9, 0, 2, 900000)  # beat is 0.9 s late
    due, wait = sched.is_due(at(2026, 11, 28, 9, 0, 0, 500000))
    assert due and wait == pytest.approx(1.1)  # the next check is at 09:00:04 on the grid, not 04.9


def entry(schedule, last_run_at, app=None) -> ScheduleEntry:
    return ScheduleEntry(name="e", task=SCHEDULED_TASK, schedule=schedule, last_run_at=last_run_at,
                         kwargs={"alphas": [1.0]}, options={"expires": 50, "queue": "default"}, app=app)


def test_entry_tick_is_the_due_minute_whatever_the_delay():
    for late in (0.2, 45.0):  # beat sends 0.2 s or 45 s after the minute: still the 09:01 tick
        now = T + timedelta(seconds=late)
        cron = crontab(minute="*/1", nowfun=lambda now=now: now)
        assert entry_tick(entry(cron, at(2026, 11, 28, 9, 0, 30))) == T
    # after downtime, the catch-up send is for the first missed minute, which is stale
    now = at(2026, 11, 28, 12, 0, 0, 100000)
    cron = crontab(minute="*/1", nowfun=lambda: now)
    old = entry_tick(entry(cron, at(2026, 11, 28, 9, 0, 0, 100000)))
    assert old == T and stamp_options({"expires": 50}, old)["expires"] < now
    sched = every(2, nowfun=lambda: at(2026, 11, 28, 9, 0, 3, 100000))
    assert entry_tick(entry(sched, at(2026, 11, 28, 9, 0, 1, 50000))) == at(2026, 11, 28, 9, 0, 2)


def test_scheduler_adds_tick_task_id_and_absolute_expiry(tmp_path, monkeypatch):
    sent = []
    # Record what the tick scheduler hands to Celery's own send (nothing is published).
    monkeypatch.setattr(Scheduler, "apply_async", lambda self, e, producer=None, advance=True, **kw: sent.append(e))
    app = Celery("t", set_as_current=False)
    now = T + timedelta(seconds=3)
    cron = crontab(minute="*/1", nowfun=lambda: now)
    scheduler = TickScheduler(app=app, schedule_filename=str(tmp_path / "s"), lazy=True)
    original = entry(cron, at(2026, 11, 28, 9, 0, 30), app=app)
    scheduler.apply_async(original, advance=False)
    (stamped,) = sent
    assert stamped.task == SCHEDULED_TASK
    assert stamped.kwargs == {"alphas": [1.0], "tick": "2026-11-28T09:01:00+00:00"}
    assert stamped.options["expires"] == T + timedelta(seconds=50)
    assert stamped.options["task_id"] == "tick-20261128090100-scheduled" and stamped.options["queue"] == "default"
    assert original.kwargs == {"alphas": [1.0]} and original.options["expires"] == 50  # not persisted


def sends_after_a_pause(tmp_path, monkeypatch, last_run_at: datetime, now: datetime, window: float,
                        schedule=None) -> list[ScheduleEntry]:
    """What a (re)started tick scheduler sends for an entry last sent at ``last_run_at``, at ``now``."""
    sent: list[ScheduleEntry] = []
    monkeypatch.setattr(Scheduler, "apply_async", lambda self, e, producer=None, advance=True, **kw: sent.append(e))
    app = Celery("t", set_as_current=False)
    scheduler = TickScheduler(app=app, schedule_filename=str(tmp_path / "s"), lazy=True)
    sched = schedule or crontab(minute="*/1", nowfun=lambda: now)
    paused = ScheduleEntry(name="e", task=SCHEDULED_TASK, schedule=sched, last_run_at=last_run_at, app=app,
                           kwargs={"alphas": [1.0]}, options={"expires": window, "queue": "default"})
    scheduler.apply_async(paused, advance=False)
    return sent


def sent_ticks(sent: list[ScheduleEntry]) -> list[str]:
    return [e.kwargs["tick"][11:19] for e in sent]


def test_beat_restarted_after_a_pause_sends_every_missed_tick(tmp_path, monkeypatch):
    # killed at 09:00:55 after sending 09:00, restarted at 09:01:05: the 09:01 tick is sent
    now = T + timedelta(seconds=5)
    sent = sends_after_a_pause(tmp_path, monkeypatch, at(2026, 11, 28, 9, 0, 0, 200000), now, 900)
    assert sent_ticks(sent) == ["09:01:00"]
    # its state file a few minutes behind (kill -9), paused across 09:01: every minute since, oldest first
    sent = sends_after_a_pause(tmp_path, monkeypatch, at(2026, 11, 28, 8, 56, 0, 200000), now, 900)
    assert sent_ticks(sent) == ["08:57:00", "08:58:00", "08:59:00", "09:00:00", "09:01:00"]
    for stamped in sent:
        tick = datetime.fromisoformat(stamped.kwargs["tick"])
        assert stamped.options["task_id"] == f"{tick_run_id(tick)}-scheduled"
        assert stamped.options["expires"] == tick + timedelta(seconds=900) > now  # none is dropped on arrival


def test_ticks_older_than_the_catch_up_window_are_not_sent_and_never_the_newest(tmp_path, monkeypatch):
    now = T + timedelta(seconds=5)
    two_hours = at(2026, 11, 28, 7, 0, 0, 200000)
    sent = sends_after_a_pause(tmp_path, monkeypatch, two_hours, now, 600)
    assert sent_ticks(sent) == [f"08:{m:02d}:00" for m in range(52, 60)] + ["09:00:00", "09:01:00"]
    # a window shorter than a tick still sends the current tick (an older one expiring drops no newer one)
    assert sent_ticks(sends_after_a_pause(tmp_path, monkeypatch, two_hours, now, 10)) == ["09:01:00"]
    grid = every(2, nowfun=lambda: at(2026, 11, 28, 9, 0, 9, 300000))
    sent = sends_after_a_pause(tmp_path, monkeypatch, at(2026, 11, 28, 9, 0, 2, 100000), now, 60, schedule=grid)
    assert sent_ticks(sent) == ["09:00:04", "09:00:06", "09:00:08"]


def test_beat_schedule_declares_the_minute_entry_or_the_test_interval():
    (name, spec), = beat_schedule.build_schedule(Settings()).items()
    assert spec["task"] == SCHEDULED_TASK and spec["schedule"] == crontab(minute="*/1")
    assert spec["options"]["expires"] == Settings().beat_catchup >= 600 and spec["options"]["queue"] == "default"
    (_, wider), = beat_schedule.build_schedule(Settings(beat_catchup=1800)).items()
    assert wider["options"]["expires"] == 1800  # PIPELINE_BEAT_CATCHUP sets the window
    assert spec["kwargs"]["alphas"] == [1.0, 0.1, 0.01, 0.001, 0.0001, 0.00001]
    (_, fast), = beat_schedule.build_schedule(Settings(beat_interval=2, schedule_label="x")).items()
    assert isinstance(fast["schedule"], every) and fast["schedule"].step == 2
    assert fast["options"]["queue"] == "x" and fast["kwargs"]["label"] == "x" and fast["kwargs"]["step"] == 2
