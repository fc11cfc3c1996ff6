"""The Celery and kombu internals the project subclasses or calls, pinned.

Each check fails with a message naming our module and the upstream code to re-read. The
version checks fail on any upgrade on purpose: the shape checks below catch renamed or
re-signed names, not changed behaviour, so an upgrade means re-reading the upstream files
named in each module's docstring (URLs at tag v5.7.0), running the behaviour tests
(test_worker_overheads, test_fanout, test_schedule_integration, test_faults_redis_kills),
then updating CHECKED_AGAINST and those comments.
"""
from __future__ import annotations

import importlib.metadata
import inspect

import pytest
from celery import bootsteps
from celery.beat import PersistentScheduler, ScheduleEntry
from celery.canvas import Signature, _chain, _chord, chain, chord, group
from celery.events.dispatcher import EventDispatcher
from celery.schedules import schedule
from celery.worker.consumer import Consumer
from celery.worker.consumer.events import Events
from kombu.transport import redis as kombu_redis
from kombu.utils.imports import symbol_by_name

CHECKED_AGAINST = {"celery": "5.7.0", "kombu": "5.7.0"}
"""The versions whose internals our code was written and checked against."""

SITES = {
    "celery": "pipeline/worker/consumer.py, pipeline/worker/liveness.py, pipeline/runs/fanout.py, "
              "pipeline/runs/dispatch.py, pipeline/schedule/scheduler.py and pipeline/schedule/every.py",
    "kombu": "pipeline/worker/kombu_redis.py",
}
"""Where the code relying on each package's internals lives (each names the upstream files)."""


def params(function) -> list[tuple[str, object]]:
    """``(name, default)`` of each parameter of ``function`` (``inspect.Parameter.empty``: none)."""
    return [(p.name, p.default) for p in inspect.signature(function).parameters.values()]


def source(function) -> str:
    return inspect.getsource(function)


def recheck(what: str, site: str) -> str:
    return f"{what} changed upstream: re-check {site} against it (the upstream file is named there)"


@pytest.mark.parametrize("package", sorted(CHECKED_AGAINST))
def test_installed_version_is_the_one_the_internals_were_checked_against(package):
    installed, checked = importlib.metadata.version(package), CHECKED_AGAINST[package]
    assert installed == checked, (
        f"{package} {installed} is installed, but {SITES[package]} rely on {package} {checked}'s internals: "
        f"re-read the upstream code named there at the new tag, run the behaviour tests listed in "
        f"{__name__}, then update CHECKED_AGAINST, requirements.txt and those comments")


def test_kombu_redis_channel_internals():
    site = "pipeline/worker/kombu_redis.py"
    assert params(kombu_redis.Channel._create_client) == [("self", inspect.Parameter.empty), ("asynchronous", False)], \
        recheck("kombu Channel._create_client's signature", site)
    assert isinstance(inspect.getattr_static(kombu_redis.Channel, "pool"), property), \
        recheck("kombu Channel.pool (no longer a property)", site)
    assert "self._create_client()" in source(kombu_redis.Channel.conn_or_acquire), \
        recheck("kombu Channel.conn_or_acquire (no longer a client per command)", site)
    assert "self._pool = None" in source(kombu_redis.Channel._disconnect_pools), \
        recheck("kombu Channel._disconnect_pools (how a pool is replaced)", site)
    assert params(kombu_redis.Channel._connparams) == [("self", inspect.Parameter.empty), ("asynchronous", False)], \
        recheck("kombu Channel._connparams's signature", site)
    assert "self.connection.client" in source(kombu_redis.Channel._connparams), \
        recheck("kombu Channel._connparams (what it reads of the connection)", site)
    assert kombu_redis.Transport.Channel is kombu_redis.Channel, recheck("kombu Transport.Channel", site)
    closing = source(kombu_redis.Channel.close)
    assert closing.index("self._disconnect_pools()") < closing.index("super().close()"), \
        recheck("kombu Channel.close (pools dropped before the unacked restore; our close drops them after)", site)


def test_kombu_redis_message_layout_the_lost_message_check_reads():
    """pipeline/worker/lost.py reads the queues' lists and the unacked hash as kombu 5.7 keeps them."""
    site = "pipeline/worker/lost.py"
    assert kombu_redis.Channel.unacked_key == "unacked", recheck("kombu Channel.unacked_key", site)
    assert kombu_redis.Channel.sep == "\x06\x16", recheck("kombu Channel.sep (priority list names)", site)
    assert list(kombu_redis.Channel.priority_steps) == [0, 3, 6, 9], recheck("kombu Channel.priority_steps", site)
    assert "self._q_for_pri(queue, pri)" in source(kombu_redis.Channel._put), recheck("kombu Channel._put", site)
    assert "dumps([message._raw, EX, RK])" in source(kombu_redis.QoS.append), \
        recheck("kombu QoS.append (an unacked entry is [message, exchange, routing key])", site)


def test_celery_consumer_event_buffer_internals():
    site = "pipeline/worker/consumer.py"
    for name in ("on_send_event_buffered", "_flush_events", "stop", "shutdown"):
        method = getattr(Consumer, name, None)
        assert callable(method) and params(method) == [("self", inspect.Parameter.empty)], \
            recheck(f"celery Consumer.{name}", site)
    assert "self.hub" in source(Consumer.on_send_event_buffered), recheck("celery Consumer.on_send_event_buffered", site)
    assert "on_send_buffered=c.on_send_event_buffered" in source(Events.start), \
        recheck("celery's Events bootstep (how the dispatcher calls the consumer back)", site)
    defaults = dict(params(EventDispatcher.__init__))
    assert defaults.get("buffer_limit") == 24 and "on_send_buffered" in defaults, \
        recheck("celery EventDispatcher's buffer_limit / on_send_buffered", site)


def test_celery_canvas_private_classes():
    site = "pipeline/runs/fanout.py and pipeline/runs/dispatch.py"
    a, b, c = (Signature(f"t{i}", immutable=True) for i in range(3))
    built_chain = chain(a, b)
    assert isinstance(built_chain, _chain) and built_chain.tasks is built_chain.kwargs["tasks"], \
        recheck("celery canvas _chain (chain's class, tasks in kwargs['tasks'])", site)
    built_chain.tasks = [a]
    assert built_chain.kwargs["tasks"] == [a], recheck("celery canvas _chain.tasks (no longer settable)", site)
    built_chord = chord(group(a, b), c)
    assert chord is _chord and isinstance(built_chord, _chord), recheck("celery canvas chord / _chord", site)
    assert built_chord.body is built_chord.kwargs["body"] and list(built_chord.tasks) == [a, b], \
        recheck("celery canvas _chord.body / .tasks (kwargs['body'], kwargs['header'])", site)
    assert list(group(a, b).tasks) == [a, b], recheck("celery canvas group.tasks", site)


def test_celery_bootstep_internals():
    site = "pipeline/worker/liveness.py"
    for name in ("start", "stop"):
        assert f"self.obj.{name}()" in source(getattr(bootsteps.StartStopStep, name)), \
            recheck(f"celery StartStopStep.{name}", site)
    assert "'terminate', self.obj.stop" in source(bootsteps.StartStopStep.terminate), \
        recheck("celery StartStopStep.terminate", site)
    assert "self.obj = ret" in source(bootsteps.StartStopStep.include), recheck("celery StartStopStep.include", site)
    from celery.worker.worker import WorkController

    assert "steps=self.app.steps['worker']" in source(WorkController.setup_instance), \
        recheck("celery WorkController (the blueprint taking app.steps['worker'])", site)


def test_celery_beat_internals():
    site = "pipeline/schedule/scheduler.py"
    assert params(PersistentScheduler.apply_async) == [
        ("self", inspect.Parameter.empty), ("entry", inspect.Parameter.empty), ("producer", None), ("advance", True),
        ("kwargs", inspect.Parameter.empty)], recheck("celery Scheduler.apply_async's signature", site)
    assert params(PersistentScheduler.reserve) == [("self", inspect.Parameter.empty), ("entry", inspect.Parameter.empty)]
    assert params(PersistentScheduler.setup_schedule) == [("self", inspect.Parameter.empty)], \
        recheck("celery PersistentScheduler.setup_schedule", site)
    assert "iter(vars(self).items())" in source(ScheduleEntry.__iter__), recheck("celery ScheduleEntry.__iter__", site)
    site = "pipeline/schedule/every.py"
    for name in ("now", "remaining_estimate", "is_due", "maybe_make_aware"):
        assert callable(getattr(schedule, name, None)), recheck(f"celery schedules.schedule.{name}", site)
    assert [n for n, _ in params(schedule.__init__)][:3] == ["self", "run_every", "relative"], \
        recheck("celery schedules.schedule's constructor", site)


def named_classes() -> list[tuple[str, str, type]]:
    """Every class the app loads by a dotted string: ``(where, string, the class it must extend)``."""
    from pipeline.celery_app import app, broker_transport

    found = [
        ("worker_consumer", app.conf.worker_consumer, Consumer),
        ("broker_transport", broker_transport("redis://localhost:6379/0")["broker_transport"], kombu_redis.Transport),
        ("beat_scheduler", app.conf.beat_scheduler, PersistentScheduler),
    ]
    found += [('app.steps["worker"]', step, bootsteps.Step) for step in app.steps["worker"] if isinstance(step, str)]
    return found


def test_every_dotted_string_of_the_app_resolves_to_the_class_it_names():
    found = named_classes()
    strings = [string for _, string, _ in found]
    assert "pipeline.worker.consumer:BatchedEventsConsumer" in strings
    assert "pipeline.worker.kombu_redis:Transport" in strings
    assert "pipeline.worker.liveness:WorkerRecordStep" in strings
    for where, string, base in found:
        cls = symbol_by_name(string)
        assert inspect.isclass(cls) and issubclass(cls, base), f"{where} = {string!r} is not a {base.__name__}"


def overrides() -> list[tuple[type, type, set[str], str]]:
    """``(our class, the upstream class it extends, the upstream methods it overrides, our module)``."""
    from pipeline.schedule.every import every
    from pipeline.schedule.scheduler import TickScheduler
    from pipeline.worker import kombu_redis as ours
    from pipeline.worker.consumer import BatchedEventsConsumer
    from pipeline.worker.liveness import WorkerRecordStep
    from pipeline.worker.redis_checks import PersistenceCheckStep
    from pipeline.notify.sender import NotifySenderStep

    kombu_site, beat_site = "pipeline/worker/kombu_redis.py", "pipeline/schedule/scheduler.py"
    return [
        (ours.QoS, kombu_redis.QoS, {"append", "ack", "reject", "restore_by_tag", "restore_visible"}, kombu_site),
        (ours.Channel, kombu_redis.Channel, {"QoS", "_create_client", "_connparams", "_restore", "close"}, kombu_site),
        (ours.Transport, kombu_redis.Transport, {"Channel", "register_with_event_loop"}, kombu_site),
        (BatchedEventsConsumer, Consumer, {"on_send_event_buffered", "stop", "shutdown"}, "pipeline/worker/consumer.py"),
        (TickScheduler, PersistentScheduler, {"setup_schedule", "apply_async"}, beat_site),
        (every, schedule, {"__init__", "remaining_estimate", "is_due", "__reduce__", "__repr__"},
         "pipeline/schedule/every.py"),
        (WorkerRecordStep, bootsteps.StartStopStep, {"create"}, "pipeline/worker/liveness.py"),
        (PersistenceCheckStep, bootsteps.StartStopStep, {"start"}, "pipeline/worker/redis_checks.py"),
        (NotifySenderStep, bootsteps.StartStopStep, {"create"}, "pipeline/notify/sender.py"),
    ]


def shape(member) -> list[tuple[object, object]] | None:
    """``(kind, default)`` of each parameter after ``self`` (names may differ), None for a non-function."""
    if not inspect.isfunction(member):
        return None
    return [(p.kind, p.default) for p in list(inspect.signature(member).parameters.values())[1:]]


@pytest.mark.parametrize("ours, upstream, expected, site", overrides(), ids=lambda v: getattr(v, "__qualname__", ""))
def test_every_override_still_overrides_the_same_upstream_method(ours, upstream, expected, site):
    """A method we override that upstream renamed would silently stop being called: list them all here."""
    overridden = {name for name, member in vars(ours).items() if callable(member) and hasattr(upstream, name)
                  and (not name.startswith("__") or name in expected)}
    assert overridden == expected, recheck(
        f"the {upstream.__module__}.{upstream.__qualname__} members {ours.__qualname__} overrides "
        f"(now {sorted(overridden)}, expected {sorted(expected)})", site)
    for name in expected - {"__init__"}:  # every's constructor is its own, on purpose
        mine, theirs = vars(ours)[name], getattr(upstream, name)
        if shape(mine) is not None and shape(theirs) is not None:
            assert shape(mine) == shape(theirs), recheck(f"{upstream.__qualname__}.{name}'s signature", site)
