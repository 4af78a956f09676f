"""A small ``python -m ops.load``: two real instances behind nginx, a short airport day through it, one
instance killed with -9 and restarted, PostgreSQL restarted, and nothing acknowledged lost.

The full-size run and its figures (including recovery times, which a test does not judge) are
``make load`` and ``ops/results/load-chaos/``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ops.load.__main__ import main, parse

pytestmark = pytest.mark.slow


async def test_a_small_day_survives_a_killed_instance_and_a_database_restart(base_settings, tmp_path: Path) -> None:
    # nginx is part of what is tested: a CI machine without it must install it (Debian: nginx-light).
    assert shutil.which("nginx"), "nginx not found: apt-get install nginx-light"
    args = parse(["--flights", "2", "--passengers", "40", "--arrival-rate", "2", "--kill-at-share", "0.2",
                  "--pg-gap-s", "1", "--pg-at-events", "15", "--pg-down-s", "2", "--faces-dir", base_settings.faces_dir,
                  "--max-minutes", "8", "--out", str(tmp_path)])
    await main(args)
    report = json.loads((tmp_path / "load-report.json").read_text())
    faults = {f["fault"]: f for f in report["faults"]}
    assert set(faults) == {"instance_kill_9", "postgresql_restart"}, report["faults"]
    assert all(f["recovered_to_ready_s"] is not None for f in faults.values()), report["faults"]
    assert any(faults["postgresql_restart"]["instances_saw_outage"]), faults["postgresql_restart"]
    assert report["acknowledged_enrolments"] > 0
    assert report["lost_acknowledged_enrolments"] == 0, report["lost_check"]
    assert report["wrong_person_accepts"] == 0
    assert report["unanswered_touchpoint_requests"] == 0, report["answers_by_status"]
    assert report["touchpoint_answers_other_than_decision_503_429"] == {}, report["answers_by_status"]
