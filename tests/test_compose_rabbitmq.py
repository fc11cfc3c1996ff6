"""docker-compose.rabbitmq.yml over docker-compose.yml: every service's broker becomes RabbitMQ and
the run record stays in Redis (no Docker engine here: the files merged as compose merges them).

tests/test_rabbitmq.py boots its RabbitMQ node with this file's Erlang arguments and checks
the consumer_timeout they set on the running node.
"""
from __future__ import annotations

from urllib.parse import urlsplit

import yaml

from conftest import ROOT
from pipeline.brokers import check_supported, is_amqp, is_redis
from pipeline.settings import DEFAULTS, Settings

BASE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
OVERRIDE = yaml.safe_load((ROOT / "docker-compose.rabbitmq.yml").read_text())


def merged() -> dict[str, dict]:
    """The services as ``docker compose -f docker-compose.yml -f docker-compose.rabbitmq.yml``
    sees them: a mapping (environment, depends_on) merged key by key, anything else replaced."""
    services = {name: dict(svc) for name, svc in BASE["services"].items()}
    for name, svc in OVERRIDE["services"].items():
        target = services.setdefault(name, {})
        for key, value in svc.items():
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                target[key] = {**target[key], **value}
            else:
                target[key] = value
    return services


def test_every_service_of_the_base_file_is_overridden_except_redis():
    """A service added to docker-compose.yml must be added here too, or it would stay on Redis."""
    assert set(OVERRIDE["services"]) == (set(BASE["services"]) - {"redis"}) | {"rabbitmq"}


def test_every_process_uses_rabbitmq_as_broker_and_redis_for_the_run_record():
    services = merged()
    for name, svc in services.items():
        if name in ("redis", "rabbitmq"):
            continue
        env = svc["environment"]
        broker, backend = urlsplit(env["CELERY_BROKER_URL"]), urlsplit(env["CELERY_RESULT_BACKEND"])
        assert is_amqp(env["CELERY_BROKER_URL"]) and broker.hostname == "rabbitmq", (name, env)
        assert is_redis(env["CELERY_RESULT_BACKEND"]) and backend.hostname == "redis", (name, env)
        check_supported(Settings.from_env(env))  # what every command checks first: no error line
        assert svc["depends_on"] == {"redis": {"condition": "service_healthy"},
                                     "rabbitmq": {"condition": "service_healthy"}}, name
        assert env["PIPELINE_ARTIFACTS"] == "/artifacts", name  # the base's settings are kept
        assert svc["restart"] == "unless-stopped" and svc["command"][:2] == ["python", "cli.py"], name


def test_rabbitmq_service_keeps_its_data_restarts_and_has_a_healthcheck():
    rabbit = merged()["rabbitmq"]
    assert rabbit["restart"] == "unless-stopped"
    assert rabbit["healthcheck"]["test"][1] == "rabbitmq-diagnostics"
    assert "rabbitmq-data:/var/lib/rabbitmq" in rabbit["volumes"] and "rabbitmq-data" in OVERRIDE["volumes"]
    user, password = rabbit["environment"]["RABBITMQ_DEFAULT_USER"], rabbit["environment"]["RABBITMQ_DEFAULT_PASS"]
    broker = urlsplit(merged()["worker-default"]["environment"]["CELERY_BROKER_URL"])
    assert (broker.username, broker.password) == (user, password)


def test_consumer_timeout_is_not_below_the_visibility_timeout():
    """RabbitMQ closes the channel of a consumer holding a message past consumer_timeout (and
    redelivers it: a duplicate); nothing we accept holds one past PIPELINE_VISIBILITY_TIMEOUT."""
    args = OVERRIDE["services"]["rabbitmq"]["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"].split()
    assert args[:2] == ["-rabbit", "consumer_timeout"]
    assert int(args[2]) >= DEFAULTS.visibility_timeout * 1000
