"""The fault suite's smoke run keeps the promises: every job final, nothing paid twice.

Runs ``python -m ops.faults --smoke`` as a subprocess (the real system, small) and checks
the report: every scenario ran, and in every run of every scenario no job was left
non-final and no job was paid for twice (the sandbox's job list). Timings and recovery
figures are in the report for the full run to show; none is asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("faults")
    proc = subprocess.run([sys.executable, "-m", "ops.faults", "--smoke", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert "scenario" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "report.txt").read_text().startswith("fault suite (smoke)")
    return {**json.loads((out / "report.json").read_text()),
            "stderr_tail": proc.stderr[-6000:]}  # a failed scenario's traceback is there


def runs(scenario: dict) -> list[tuple[str, dict]]:
    figures = scenario.get("figures", {})
    if "enqueued" in figures:
        return [("-", figures)]
    return [(name, fig) for name, fig in figures.items()
            if isinstance(fig, dict) and "enqueued" in fig]


def test_every_scenario_ran(report):
    assert report["errors"] == {}, report["stderr_tail"]
    assert sorted(report["scenarios"]) == ["1", "2", "3", "4", "5", "6", "7", "8"]


@pytest.mark.parametrize("number", ["1", "2", "3", "4", "5", "6", "7", "8"])
def test_no_job_left_non_final_and_none_paid_twice(report, number):
    scenario = report["scenarios"][number]
    if scenario.get("available") is False:
        pytest.skip(scenario["reason"])
    checked = runs(scenario)
    assert checked, scenario
    for name, figures in checked:
        assert figures["enqueued"] > 0, name
        assert figures["not_final"] == 0, (name, figures)
        assert not figures["timed_out"], (name, figures)
        assert figures["paid_twice"] == 0, (name, figures)
        assert figures["succeeded_unpaid"] == 0, (name, figures)


def test_crash_storm_killed_workers_and_beat(report):
    figures = report["scenarios"]["1"]["figures"]
    assert figures["worker_kills"] >= 2 and figures["beat_kills"] == 1
    assert figures["matched_to_a_kill"] <= figures["outcome_unknown"]


def test_every_final_state_reached_its_webhook_through_the_kills_and_the_outage(report):
    figures = report["scenarios"]["8"]["figures"]
    assert figures["worker_kills"] >= 2 and figures["webhooks_settled"]
    assert figures["final_events_owed"] == figures["enqueued"]
    assert figures["final_events_missed"] == 0 and figures["deliveries_unverified"] == 0
    assert figures["final_events_delivered"] == figures["final_events_owed"]


def test_malformed_answers_never_escape_our_error_tree(report):
    generated = report["scenarios"]["5"]["figures"]["generated"]
    if not generated["available"]:
        pytest.skip(generated["reason"])
    assert generated["distinct_answers"] >= 100
    assert generated["unhandled_exceptions"] == 0


def test_the_report_carries_recovery_figures_per_fault(report):
    # Figures for the full run's report, never judged here (timings depend on the machine).
    crash = report["scenarios"]["1"]["figures"]
    for name in ("recovery_after_kill_p50_s", "recovery_after_kill_max_s",
                 "killed_workers_jobs", "all_jobs_moved_again_after_kill_max_s"):
        assert isinstance(crash[name], int | float) and crash[name] >= 0, name
    restarts = report["scenarios"]["2"]["figures"]
    for run in ("aof_restart", "empty_broker_restart"):
        assert set(restarts[run]["recovery"]) == {"jobs", "p50_s", "max_s"}, run
