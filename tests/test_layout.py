"""The house's rules that a reader relies on, checked on the code itself."""
from __future__ import annotations

import re
from pathlib import Path

PIPELINE = Path(__file__).resolve().parent.parent / "pipeline"


def sources(outside: str) -> dict[Path, str]:
    """Every module of ``pipeline/`` outside the subpackage ``outside``."""
    return {p: p.read_text() for p in PIPELINE.rglob("*.py") if (PIPELINE / outside) not in p.parents}


def test_only_the_ledger_holds_its_redis_client():
    """Other modules call the ledger's methods; none reaches into ``ledger.r`` (issue 16 item 2)."""
    reaching = {str(p.relative_to(PIPELINE)): n for p, text in sources("ledger").items()
                if (n := len(re.findall(r"\bledger\(\)\.r\b|\bledger\.r\b|\bbook\.r\b|\.ledger\.r\b", text)))}
    assert reaching == {}


def test_only_the_ledger_names_the_run_records_keys():
    """``pipeline:run:`` and ``pipeline:notify:`` keys are spelled in pipeline/ledger/ only."""
    spelled = [str(p.relative_to(PIPELINE)) for p, text in sources("ledger").items()
               if re.search(r"KEY_PREFIX\}:(run|notify|runs|flows|schedule)\b|['\"]pipeline:(run|notify|flows)", text)]
    assert spelled == []


def test_task_states_are_the_enums_not_bare_strings():
    """Python code outside the ledger's values names task states by TaskState, not by text."""
    states = "Pending|Running|Retrying|Success|Cached|Failed|TriggerFailed|Cancelled|Unfinished"
    bare = [f"{p.relative_to(PIPELINE)}:{i}" for p, text in sources("ledger").items()
            for i, line in enumerate(text.splitlines(), 1)
            if re.search(rf"frozenset\(\{{[^}}]*['\"]({states})['\"]", line)]
    assert bare == []
