"""Admission with real workers (concurrency 4) and beat: the race, spinning, fairness, caps.

Task executions are counted from the workers' own log (Celery's ``celery.app.trace`` line
for each run of a task), paid submits from the sandbox's request log, the admission
order from admission's log in Redis.
"""

from __future__ import annotations

import re

import pytest

from tasks import admission, spend
from tests.system import image_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_RUN = re.compile(r"celery\.app\.trace: Task (enhance\.\w+)\[")


def executions(system) -> dict[str, int]:
    """How many times each task ran (succeeded, retried or failed), over every worker."""
    counts: dict[str, int] = {}
    for name in _RUN.findall(system.logs("worker")):
        counts[name] = counts.get(name, 0) + 1
    return counts


def paid_once_each(sandbox, records) -> bool:
    return all(sandbox.count(kind="submit", status=200, job_id=r.provider_job_id) == 1
               for r in records)


def test_a_slow_create_call_is_never_paid_for_and_then_failed(system, sandbox):
    """The issue's race: beat + 4 processes + a create call of 1-2 s, 120 PicWish jobs."""
    sandbox.configure(create_latency_s=(1.0, 2.0), processing_time_s=(0.2, 0.5))
    system.start_worker(concurrency=4)
    system.start_beat()
    ids = [system.enqueue(image_bytes(40, 40), "picwish", "hd") for _ in range(120)]

    records = system.wait(ids, timeout_s=300)

    failed = [r.error.code for r in records if r.error]
    assert failed == [], f"{failed.count('outcome_unknown')} outcome_unknown of {len(failed)}"
    assert [r.state.value for r in records] == ["succeeded"] * len(ids)
    assert sandbox.count(kind="submit", status=200) == len(ids), "one paid submit per job"
    assert paid_once_each(sandbox, records)
    assert executions(system)["enhance.submit"] == len(ids), "one submit task per job"


def test_jobs_waiting_on_the_budget_do_not_make_tasks_spin(system, sandbox):
    """PicWish at 4 req/s: jobs wait for admission, yet each submit runs once."""
    env = {"PICWISH_MAX_RPS": "4", "PICWISH_MAX_IN_FLIGHT": "4"}
    system.start_worker(concurrency=4, **env)
    system.start_beat(**env)
    ids = [system.enqueue(image_bytes(40, 40), "picwish", "hd") for _ in range(16)]

    records = system.wait(ids, timeout_s=180)

    assert [r.state.value for r in records] == ["succeeded"] * len(ids), \
        [r.error for r in records]
    runs = executions(system)
    assert runs["enhance.submit"] == len(ids)
    # one run per admission at the pace of the budget, plus wake-ups from finished jobs
    assert runs["enhance.admit"] <= 4 * len(ids), runs
    assert runs["enhance.poll"] <= 4 * len(ids), runs
    assert sandbox.count(kind="submit", status=200) == len(ids)
    assert sandbox.count(status=429) == 0


def test_tenants_take_turns_in_the_recorded_admission_order(system, sandbox):
    a = [system.enqueue(image_bytes(40, 40), "picwish", "hd", tenant="acme") for _ in range(8)]
    b = [system.enqueue(image_bytes(40, 40), "picwish", "hd", tenant="beta") for _ in range(2)]
    system.start_worker(concurrency=4, PICWISH_MAX_IN_FLIGHT="1")
    system.start_beat(PICWISH_MAX_IN_FLIGHT="1")

    records = system.wait(a + b, timeout_s=120)

    assert [r.state.value for r in records] == ["succeeded"] * 10
    order = [job_id for job_id, _, _ in admission.admission_log(system.runtime, "picwish")]
    assert order == [a[0], b[0], a[1], b[1], *a[2:]]


def test_interactive_goes_first_and_batch_keeps_its_share(system, sandbox):
    batch = [system.enqueue(image_bytes(40, 40), "picwish", "hd", priority="batch")
             for _ in range(5)]
    interactive = [system.enqueue(image_bytes(40, 40), "picwish", "hd") for _ in range(6)]
    env = {"PICWISH_MAX_IN_FLIGHT": "1", "BATCH_SHARE_EVERY": "3"}
    system.start_worker(concurrency=4, **env)
    system.start_beat(**env)

    records = system.wait(batch + interactive, timeout_s=120)

    assert all(r.state.value == "succeeded" for r in records)
    lanes = "".join(lane[0] for _, _, lane in admission.admission_log(system.runtime, "picwish"))
    assert lanes == "iibiibiibbb"


@pytest.mark.parametrize("policy", ["wait", "fail"])
def test_a_daily_spend_cap_holds_under_four_racing_processes(system, sandbox, policy):
    env = {"PICWISH_DAILY_CREDIT_LIMIT": "20", "SPEND_CAP_POLICY": policy}
    system.start_worker(concurrency=4, **env)
    system.start_beat(**env)
    ids = [system.enqueue(image_bytes(40, 40), "picwish", "hd") for _ in range(12)]  # 4 each

    def settled(records):
        done = sum(r.state.value == "succeeded" for r in records)
        return done == 5 and (policy == "wait" or all(r.state.final for r in records))

    records = system.wait(ids, timeout_s=120, until=settled)

    states = sorted(r.state.value for r in records)
    expected = {"wait": ["queued"] * 7, "fail": ["failed"] * 7}[policy]
    assert states == expected + ["succeeded"] * 5
    assert sandbox.count(kind="submit", status=200) == 5
    assert spend.spent_today(system.runtime, "picwish")["total"] == 20
    if policy == "fail":
        assert {r.error.code for r in records if r.error} == {"budget_exhausted"}
