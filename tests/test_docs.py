"""The documentation against the code: the settings table, the README's promises, its links.

The settings table in docs/deployment.md is checked against ``Settings.from_env`` by
behaviour, not by reading its source: the variables it reads (recorded while it reads a
mapping), what each variable changes, and what each variable's documented default means.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping

from conftest import ROOT
from pipeline.settings import Settings

DEPLOYMENT = ROOT / "docs" / "deployment.md"
TABLE_HEADER = "| variable | default | what it does |"
PROBE = "12345"
"""A value no setting has by default, valid for every one of them (a number, a path, a URL...)
but those that take one of a few words (:data:`CHOICE_PROBES`)."""

CHOICE_PROBES = {"PIPELINE_SCHEDULE_CACHE": "on"}
"""A valid value other than the default of each setting that takes one of a few words."""


def probe(name: str) -> str:
    """A value of variable ``name`` that no setting has by default and that it accepts."""
    return CHOICE_PROBES.get(name, PROBE)


class RecordingEnv(Mapping):
    """An environment that remembers every variable asked for."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        self.values = dict(values or {})
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def settings_table() -> dict[str, str]:
    """Variable -> its default cell, from the table under ``TABLE_HEADER``."""
    lines = DEPLOYMENT.read_text().splitlines()
    start = lines.index(TABLE_HEADER) + 2
    rows = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1]
    return rows


def variables_read() -> set[str]:
    env = RecordingEnv()
    Settings.from_env(env)
    return env.asked


def changed_fields(name: str, value: str) -> set[str]:
    """The Settings fields that setting ``name`` to ``value`` changes."""
    default, changed = Settings.from_env({}), Settings.from_env({name: value})
    return {f.name for f in dataclasses.fields(Settings) if getattr(default, f.name) != getattr(changed, f.name)}


def test_the_table_lists_exactly_the_variables_the_settings_read():
    documented, read = set(settings_table()), variables_read()
    assert documented - read == set(), "documented but never read by Settings.from_env"
    assert read - documented == set(), "read by Settings.from_env but missing from docs/deployment.md"


def test_every_setting_is_driven_by_a_documented_variable():
    driven = set().union(*(changed_fields(name, probe(name)) for name in settings_table()))
    assert driven == {f.name for f in dataclasses.fields(Settings)}


def test_every_documented_default_is_the_codes():
    default = Settings.from_env({})
    for name, cell in settings_table().items():
        assert changed_fields(name, probe(name)), f"{name}: setting it changes nothing"
        if cell.startswith("unset"):
            for field in changed_fields(name, probe(name)):
                assert getattr(default, field) in (None, (), ""), f"{name}: documented unset, code has a default"
        else:
            value = re.match(r"`([^`]*)`", cell)
            assert value, f"{name}: default cell {cell!r} starts with neither `value` nor 'unset'"
            assert changed_fields(name, value.group(1)) == set(), \
                f"{name}={value.group(1)} (the documented default) is not what the code does without it"


def test_readme_keeps_its_promises_and_stays_short():
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 160
    for command in ("pip install -r requirements.txt", "python cli.py sweep",
                    "pip install -r requirements-dev.txt && python -m pytest -q"):
        assert command in lines, f"the README lost the line {command!r}"


def test_relative_links_in_readme_and_docs_lead_to_files():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_the_documented_flow_digest_is_the_codes():
    """The README names the flow's current digest: changing the definition's code (a new flow
    version for every run after it) fails here until the README says so."""
    from pipeline.ledger.versions import current_digest

    for page in (ROOT / "README.md", ROOT / "docs" / "inspecting-runs.md"):
        named = re.findall(r"`([0-9a-f]{6})\.\.\.`", page.read_text())
        assert named, f"{page.name} names no flow digest"
        assert named[-1] == current_digest()[:6], \
            f"{page.name}: the flow's digest is now {current_digest()[:6]}..., documented {named[-1]}..."


def test_the_readme_command_table_names_every_command():
    from pipeline.cli.main import cli

    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("| command | what it does |") + 2
    named = set()
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        first_cell = line.split(" | ")[0]
        named |= {span.split()[0] for span in re.findall(r"`([^`]+)`", first_cell)}
    assert named == set(cli.commands)


def test_the_systemd_unit_puts_each_key_in_its_section():
    """systemd ignores a key in the wrong section ("Unknown key ... ignoring"): StartLimitIntervalSec,
    which keeps the worker restarted forever, is a [Unit] key, Restart a [Service] one."""
    import configparser

    text = DEPLOYMENT.read_text()
    unit = text.split("pipeline-worker@.service`:", 1)[1].split("```ini", 1)[1].split("```", 1)[0]
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(unit)
    assert parser["Unit"]["StartLimitIntervalSec"] == "0" and "StartLimitIntervalSec" not in parser["Service"]
    assert parser["Service"]["Restart"] == "always"
