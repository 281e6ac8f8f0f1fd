"""The benchmark's smoke run produces every figure of every scenario.

Runs ``python -m ops.bench --smoke`` as a subprocess (the real system, tiny) and checks
the report's shape and sanity: types, signs, every job succeeded, 429s counted, and the
admission scenarios' correctness (nothing failed or paid twice in the backlog, one paid
call for identical enqueues, spend within the cap). Never wall-clock speed: that is what
the full run is for, on a known machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from numbers import Real
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.integration]

JOB_FIGURES = (
    "jobs_per_s", "e2e_p50_s", "e2e_p95_s", "store_lag_p50_s", "store_lag_p95_s",
    "provider_submits_per_job", "provider_polls_per_job", "result_downloads_per_job",
    "celery_tasks_per_job", "celery_tasks_per_job_from_records", "worker_rss_peak_mib",
    "worker_rss_main_peak_mib", "redis_bytes_per_in_flight_job", "worker_cpu_ms_per_job",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-m", "ops.bench", "--smoke", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "report.png").stat().st_size > 0
    assert "figure" in proc.stdout  # the summary table
    return json.loads((out / "report.json").read_text())


def number(value, *, positive: bool = False) -> bool:
    ok = isinstance(value, Real) and not isinstance(value, bool) and value >= 0
    return ok and (value > 0 if positive else True)


def assert_jobs(figures: dict) -> None:
    assert figures["all_succeeded"] is True, figures
    assert figures["succeeded"] == figures["jobs"] > 0
    assert figures["timed_out"] is False
    for name in JOB_FIGURES:
        assert number(figures[name]), (name, figures[name])
    assert figures["jobs_per_s"] > 0
    assert figures["provider_submits_per_job"] >= 1
    assert isinstance(figures["provider_429s"], int) and figures["provider_429s"] >= 0


def test_every_scenario_ran_without_error(report):
    assert report["errors"] == {}
    assert sorted(report["scenarios"]) == sorted(str(n) for n in range(1, 11))
    assert report["mode"] == "smoke"
    assert number(report["machine"]["cpus"], positive=True)
    for scenario in report["scenarios"].values():
        assert scenario["params"] and scenario["figures"]


def test_orchestration_overhead_has_its_floor(report):
    f = report["scenarios"]["1"]["figures"]
    assert_jobs(f)
    assert f["celery_tasks_per_job"] >= 2  # a submit and a store at least
    assert number(f["celery_ceiling"]["tasks_per_s"], positive=True)
    assert number(f["celery_ceiling"]["worker_cpu_ms_per_task"])
    assert number(f["celery_at_job_rate"]["tasks_per_s"], positive=True)
    assert number(f["celery_at_job_rate"]["worker_cpu_ms_per_task"])
    for name in ("submit_cpu_ms", "poll_cpu_ms", "store_cpu_ms"):
        assert number(f["bare_calls"][name], positive=True), name
    for name in ("ceiling_jobs_per_s", "jobs_per_s_vs_ceiling", "floor_cpu_ms_per_job",
                 "cpu_per_job_vs_floor", "floor_cpu_ms_per_job_saturated",
                 "cpu_per_job_vs_floor_saturated"):
        assert number(f[name], positive=True), name
    for added in (f["latency_added"], f["latency_added_burst"]):
        assert added["measured_jobs"] > 0
        for name in ("provider_time_p50_s", "added_p50_s", "added_bound_at_p50_s",
                     "enqueue_to_provider_p95_s", "provider_done_to_stored_p95_s",
                     "store_step_p95_s"):
            assert number(added[name], positive=True), name
    assert f["latency_added"]["succeeded"] == f["latency_added"]["jobs"]
    rows = f["schedule_frontier"]["rows"]
    assert rows and all(number(row["polls_per_job"], positive=True) for row in rows)
    assert number(f["schedule_frontier"]["least_wait_p50_any_schedule_s"], positive=True)


def test_provider_cap_counts_429s(report):
    scenario = report["scenarios"]["2"]
    f = scenario["figures"]
    assert_jobs(f)
    assert scenario["params"]["settings"]["PICWISH_MAX_RPS"] == scenario["params"]["qps"]
    assert isinstance(f["provider_429s"], int) and f["provider_429s"] >= 0  # counted, not judged
    assert number(f["jobs_per_s_vs_ideal"], positive=True)
    assert number(f["sustained_vs_ideal"], positive=True)
    assert number(f["tightest_window_span_s"], positive=True)


def test_naive_side_by_side_by_job_count(report):
    scenario = report["scenarios"]["3"]
    f = scenario["figures"]
    assert f["naive"]["all_succeeded"] is True
    assert number(f["naive"]["jobs_per_s"], positive=True)
    assert [r["jobs"] for r in f["ours_by_jobs"]] == scenario["params"]["ours_jobs"]
    for row in f["ours_by_jobs"]:
        assert row["all_succeeded"] is True, row
        assert number(row["ratio"], positive=True)
    assert f["jobs_per_s_ratio"] == f["ours_by_jobs"][-1]["ratio"]


def test_large_results_by_size(report):
    rows = report["scenarios"]["4"]["figures"]["by_size"]
    assert len(rows) >= 2
    for row in rows:
        assert row["all_succeeded"] is True, row
        assert number(row["result_bytes"], positive=True)
        assert number(row["worker_rss_peak_mib"], positive=True)
        assert number(row["worker_rss_child_peak_mib"], positive=True)


def test_many_in_flight_per_job(report):
    scenario = report["scenarios"]["5"]
    f = scenario["figures"]
    assert f["plateau_reached"] is True
    assert f["in_flight"] > 0
    assert scenario["params"]["settings"]["WORKER_ETA_TASK_LIMIT"] >= scenario["params"]["jobs"]
    for name in ("worker_rss_mib", "redis_used_mib", "redis_bytes_per_in_flight_job",
                 "worker_main_rss_bytes_per_in_flight_job"):
        assert number(f[name]), name


def test_backlog_fails_nothing_and_pays_once(report):
    f = report["scenarios"]["6"]["figures"]
    assert f["failed"] == 0, f
    assert f["paid_twice"] == 0, f
    assert f["succeeded"] > 0
    assert f["queued_after_enqueue"] > 0
    assert f["paid_calls"] == f["jobs_with_provider_job"]
    for name in ("task_executions_per_job", "minimum_executions_per_job",
                 "redis_bytes_per_queued_job", "worker_rss_peak_mib"):
        assert number(f[name], positive=True), name


def test_fairness_admits_b_behind_a(report):
    f = report["scenarios"]["7"]["figures"]
    for name in ("b_alone_wait_p95_s", "b_behind_a_wait_p95_s", "fifo_b_wait_estimate_s"):
        assert number(f[name], positive=True), name
    assert f["a_admitted_meanwhile"] < report["scenarios"]["7"]["params"]["a_jobs"]


def test_reuse_pays_once_for_identical_enqueues(report):
    f = report["scenarios"]["8"]["figures"]
    assert f["succeeded"] == f["jobs"] > 1, f
    assert f["paid_calls"] == 1, f
    assert f["reused"] == f["jobs"] - 1
    assert f["distinct_outputs"] == f["jobs"], "each job gets its own object"


def test_spend_stays_within_the_cap(report):
    f = report["scenarios"]["9"]["figures"]
    assert f["timed_out"] is False
    assert 0 < f["credits_charged"] <= f["cap_credits"], f
    assert f["ledger_credits"] <= f["cap_credits"]
    assert f["succeeded"] + sum(f["failure_codes"].values()) == f["jobs"]
    assert set(f["failure_codes"]) <= {"budget_exhausted"}


def test_what_durable_claims_cost_per_job_is_reported(report):
    figures = report["scenarios"]["10"]["figures"]
    assert sorted(figures["ms_by_durability"]) == ["fsync", "none", "wait"]
    for mode, ms in figures["ms_by_durability"].items():
        for name in ("create_p50_ms", "claim_p50_ms", "job_p50_ms", "job_p95_ms"):
            assert number(ms[name], positive=True), (mode, name, ms)
    assert figures["extra_ms_per_job_p50"]["none"] == 0
