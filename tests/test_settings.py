"""Settings: each default written once, in the dataclass; the environment overrides it."""
from __future__ import annotations

import dataclasses
import inspect
import re

from pipeline import settings
from pipeline.settings import DEFAULTS, Settings


def test_an_empty_environment_gives_every_default():
    assert Settings.from_env({}) == DEFAULTS == Settings()


def test_from_env_repeats_no_default():
    """A literal default in from_env would be a second copy that can drift from the field's."""
    source = inspect.getsource(Settings.from_env)
    assert not re.findall(r'_float\(env, "\w+", [-\d.]', source)
    assert not re.findall(r'or "[^"]*"\)?,', source)


def test_every_field_is_read_from_the_environment():
    env = {"PIPELINE_VISIBILITY_TIMEOUT": "7", "PIPELINE_STATE_DIR": "x", "PIPELINE_FLOWER_URL": "http://f:1/"}
    read = Settings.from_env(env)
    assert (read.visibility_timeout, str(read.state_dir), read.flower_url) == (7.0, "x", "http://f:1")
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert fields <= set(re.findall(r"(\w+)=", inspect.getsource(Settings.from_env)))
    assert settings.FLOWER_PORT == int(DEFAULTS.flower_url.rsplit(":", 1)[1])
