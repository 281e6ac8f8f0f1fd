"""Scenario 8's count of what reached the receiver, against the jobs' final states."""

from __future__ import annotations

from datetime import timedelta

from ops.faults.webhooks import Arrival, delivery_figures
from storage.jobs import JobRecord, JobSource, JobState, utcnow


def ended(state: JobState) -> JobRecord:
    at = utcnow()
    return JobRecord(provider="picwish", model="enhance", state=state,
                     source=JobSource(uri="https://example.com/a.jpg"),
                     transitions={state.value: at})


def arrival(record: JobRecord, after_s: float, status: int = 200, verified: bool = True,
            state: JobState | None = None) -> Arrival:
    at = record.transitions[record.state.value] + timedelta(seconds=after_s)
    return Arrival(f"evt_{record.id}_{(state or record.state).value}", at.timestamp(), status,
                   verified)


def test_a_final_event_counts_once_it_was_answered_2xx_and_verified():
    done, failed, refused, forged, running = (
        ended(JobState.SUCCEEDED), ended(JobState.FAILED), ended(JobState.SUCCEEDED),
        ended(JobState.SUCCEEDED), ended(JobState.PROCESSING))
    figures = delivery_figures([done, failed, refused, forged, running], [
        arrival(done, 1.0, status=503), arrival(done, 3.0), arrival(done, 5.0),  # again
        arrival(failed, 2.0),
        arrival(refused, 1.0, status=503),  # never answered 2xx: missed
        arrival(forged, 1.0, verified=False),  # a 2xx, but not signed with our secret
        arrival(running, 1.0, state=JobState.SUCCEEDED),  # an event its job does not owe
    ])

    assert figures["final_events_owed"] == 4
    assert figures["final_events_delivered"] == 2
    assert figures["final_events_missed"] == 2
    assert figures["deliveries"] == 7 and figures["deliveries_answered_503"] == 2
    assert figures["deliveries_unverified"] == 1
    assert figures["delivered_again_after_2xx"] == 1
    assert figures["end_to_first_2xx_max_s"] == 3.0
    assert figures["webhook_outcomes"] == {"None": 5}
