"""Lean polling: once the system has seen jobs of a kind, most need a single poll."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_polls_per_job_approach_one_once_durations_are_learnt(system, sandbox):
    sandbox.configure(processing_time_s=(1.5, 1.8))
    system.start_worker(concurrency=2, HITPAW_POLL_INTERVAL_S="0.2",
                        HITPAW_POLL_MAX_INTERVAL_S="0.4")
    source = sandbox.sample_url("portrait.jpg")

    learning = [system.enqueue(source, "hitpaw", "general_2x") for _ in range(10)]
    first = system.wait(learning, timeout_s=60)
    learnt = [system.enqueue(source, "hitpaw", "general_2x") for _ in range(20)]
    second = system.wait(learnt, timeout_s=60)

    assert all(r.state.value == "succeeded" for r in first + second)
    polls_before = sum(r.poll_count for r in first) / len(first)
    polls_after = sum(r.poll_count for r in second) / len(second)
    assert polls_before >= 4, "with 0.2-0.4 s intervals a 1.5 s job takes several polls"
    assert polls_after <= 1.6, f"{polls_after:.2f} polls per job after learning"
    queries = sandbox.count(provider="hitpaw", kind="query")
    assert queries == sum(r.poll_count for r in first + second)
