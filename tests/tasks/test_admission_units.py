"""Admission decisions one at a time, against a real Redis, with a recording dispatcher.

No worker runs here: each test calls ``admit_one``, ``admit`` or ``wake`` itself and reads
the decisions (and the schedule admission gives itself) from what was recorded.
"""

from __future__ import annotations

import multiprocessing
import time

import pytest
import redis

from storage.jobs import JobRecord, JobSource, Priority, utcnow
from tasks import admission, spend
from tasks.budget import SUBMIT_SHARE
from tests.tasks.dispatch import RecordingDispatcher
from workers.runtime import Runtime
from workers.settings import Settings


@pytest.fixture
def make_rt(redis_url):
    made = []

    def make(**overrides) -> Runtime:
        rt = Runtime(Settings(redis_url=redis_url, **overrides))
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


def job(rt, tenant="default", priority=Priority.INTERACTIVE, provider="picwish", store=False):
    record = JobRecord(provider=provider, model="hd", tenant=tenant, priority=priority,
                       source=JobSource(uri="https://example.com/a.png"))
    if store:
        rt.jobs.create(record)
    admission.push(rt, record)
    return record


def take(rt, provider="picwish", now_ms=None) -> admission.Admitted:
    """One admission decision with the request budget's marks cleared (not tested here)."""
    rt.redis.delete(*rt.budget.submit_keys(provider))
    return admission.admit_one(rt, provider, now_ms)


def admit_all(rt, provider="picwish", now_ms=1000) -> list[tuple[str, str]]:
    """Admit until admission says no; return (tenant, lane) of each admission in order."""
    order = []
    while (decision := take(rt, provider, now_ms)).kind == "ok":
        order.append((decision.tenant, decision.lane))
    return order


def woken_chain(rt, provider="picwish") -> tuple[RecordingDispatcher, str]:
    """A recording dispatcher and the token of the chain a wake started (its first run)."""
    dispatch = RecordingDispatcher()
    admission.wake(rt, provider, dispatch)
    return dispatch, dispatch.sent[0][2]


def test_tenants_take_turns_and_each_keeps_its_own_order(make_rt):
    rt = make_rt()
    a = [job(rt, "acme") for _ in range(5)]
    b = [job(rt, "beta") for _ in range(2)]

    ids = []
    while (decision := take(rt)).kind == "ok":
        ids.append(decision.job_id)

    assert ids == [a[0].id, b[0].id, a[1].id, b[1].id, a[2].id, a[3].id, a[4].id]
    assert [entry[0] for entry in admission.admission_log(rt, "picwish")] == ids


def test_a_tenant_arriving_late_waits_one_turn_not_the_whole_backlog(make_rt):
    rt = make_rt()
    for _ in range(1000):
        job(rt, "acme")
    assert [take(rt).tenant for _ in range(3)] == ["acme"] * 3
    late = job(rt, "beta")
    first = take(rt)
    second = take(rt)
    assert "beta" in (first.tenant, second.tenant)
    assert late.id in (first.job_id, second.job_id)


def test_batch_keeps_one_admission_in_n(make_rt):
    rt = make_rt(batch_share_every=3)
    for _ in range(6):
        job(rt, priority=Priority.BATCH)
    for _ in range(6):
        job(rt, priority=Priority.INTERACTIVE)

    lanes = [lane[0] for _, lane in admit_all(rt)]

    assert "".join(lanes) == "iibiibiibbbb"


def test_tenant_caps_and_the_provider_cap_hold(make_rt):
    rt = make_rt(picwish_max_in_flight=6, tenant_max_in_flight=1,
                 tenant_max_in_flight_overrides="big:3")
    jobs = {tenant: [job(rt, tenant) for _ in range(4)] for tenant in ("small", "big", "other")}

    order = [t for t, _ in admit_all(rt)]

    assert order == ["big", "other", "small", "big", "big"], "in turn, each under its cap"
    assert take(rt).kind == "tenant_cap"
    job(rt, "fresh")
    assert take(rt).tenant == "fresh"
    assert take(rt).kind == "cap", "6 slots: the provider's cap"
    assert admission.release(rt, jobs["small"][0])
    assert take(rt).tenant == "small"


def test_every_tenant_at_its_cap_is_reported_as_such(make_rt):
    rt = make_rt(tenant_max_in_flight=1)
    job(rt, "acme")
    job(rt, "acme")
    assert take(rt).kind == "ok"
    assert take(rt).kind == "tenant_cap"


def test_a_job_taken_back_goes_first_again(make_rt):
    rt = make_rt()
    first, second = job(rt, "acme"), job(rt, "acme")
    job(rt, "beta")
    decision = take(rt)
    assert decision.job_id == first.id
    admission.push(rt, first, front=True)

    assert admission.admitted_count(rt, "picwish") == 0, "its slot is free again"
    assert take(rt).job_id == first.id
    assert take(rt).tenant == "beta"
    assert take(rt).job_id == second.id


def test_a_tenant_over_its_spend_cap_is_skipped_until_the_next_day(make_rt):
    rt = make_rt(picwish_tenant_daily_credit_limits="acme:4")
    a = job(rt, "acme", store=True)
    job(rt, "acme")
    job(rt, "beta")
    assert spend.reserve(rt, rt.jobs.get(a.id)).refused is None
    refused = spend.reserve(rt, rt.jobs.get(a.id))
    assert refused.refused == "tenant"
    spend.hold_for_cap(rt, refused)

    assert [t for t, _ in admit_all(rt, now_ms=int(time.time() * 1000))] == ["beta"]


def test_the_budget_slot_is_taken_with_the_job_or_not_at_all(make_rt):
    rt = make_rt(picwish_max_rps=2)
    first, second = job(rt), job(rt)

    assert admission.admit_one(rt, "picwish").job_id == first.id
    assert admission.admit_one(rt, "picwish").kind == "turn", "a turn held, no job taken"
    assert admission.waiting(rt, "picwish")["interactive"] == 1, "the second still waits"
    rt.redis.delete(*rt.budget.submit_keys("picwish"))
    assert admission.admit_one(rt, "picwish").job_id == second.id


def test_one_wake_starts_one_chain(make_rt):
    rt = make_rt()
    dispatch = RecordingDispatcher()
    assert admission.wake(rt, "picwish", dispatch, revive_only=True)
    assert not admission.wake(rt, "picwish", dispatch, revive_only=True)
    assert not admission.wake(rt, "picwish", dispatch)  # it is due now anyway
    assert [s[0] for s in dispatch.sent] == ["admit"]


def test_a_chain_whose_run_died_lapses_its_grace_after_it_was_due(make_rt):
    # Issue 9: a chain lived a paid call's length (52 s) past its due time, so when the
    # worker holding its run was SIGKILLed every wake-up took it for live and queued jobs
    # (a lost submit given back to admission) waited ~50 s. It lives POLL_GRACE_S.
    rt = make_rt(poll_grace_s=3)
    job(rt, store=True)
    dispatch = RecordingDispatcher()
    assert admission.wake(rt, "picwish", dispatch)  # its run dies with its worker

    ttl_ms = rt.redis.pttl(admission.prefix("picwish") + "chain")
    assert 0 < ttl_ms <= 3000
    rt.redis.delete(admission.prefix("picwish") + "chain")  # as it lapses
    assert admission.wake(rt, "picwish", dispatch, revive_only=True), "a new chain"


def test_a_run_sends_what_the_budget_takes_then_books_its_next_turn(make_rt):
    rt = make_rt(picwish_max_rps=2)
    ids = [job(rt, store=True).id for _ in range(5)]
    dispatch, token = woken_chain(rt)

    assert admission.admit(rt, dispatch, "picwish", token) == 1

    interval = rt.budget.interval_s("picwish")
    early = admission.BOOK_AHEAD_MS / 2000  # runs a little early to book the slot itself
    assert dispatch.sent[1] == ("submit", ids[0])
    kind, _, again, countdown = dispatch.sent[2]
    assert (kind, again) == ("admit", token)
    assert interval - early - 0.05 <= countdown <= interval - early + 0.002, \
        "just before the next turn, which it holds"
    assert len(dispatch.sent) == 3


def test_a_stale_run_does_nothing(make_rt):
    rt = make_rt()
    job(rt, store=True)
    dispatch, _ = woken_chain(rt)

    assert admission.admit(rt, dispatch, "picwish", "not-the-token") == 0
    assert [s[0] for s in dispatch.sent] == ["admit"]


def test_an_empty_queue_ends_the_chain_and_a_wake_starts_a_new_one(make_rt):
    rt = make_rt()
    dispatch, token = woken_chain(rt)

    assert admission.admit(rt, dispatch, "picwish", token) == 0
    assert len(dispatch.sent) == 1, "nothing waits: no run is scheduled"
    job(rt, store=True)
    assert admission.wake(rt, "picwish", dispatch, revive_only=True)


def test_a_wake_during_a_run_is_not_lost(make_rt):
    rt = make_rt(picwish_max_in_flight=1)
    job(rt, store=True)
    job(rt, store=True)
    dispatch, token = woken_chain(rt)
    woken = []

    def submit_and_wake(job_id, countdown_s=0):  # a job leaves flight while the run goes on
        dispatch.sent.append(("submit", job_id))
        woken.append(admission.wake(rt, "picwish", dispatch))

    dispatch.submit = submit_and_wake
    admission.admit(rt, dispatch, "picwish", token)  # at the cap after one

    assert woken == [False], "the running chain was marked, no second run sent"
    kind, _, again, countdown = dispatch.sent[-1]
    assert (kind, again) == ("admit", token)
    assert countdown <= rt.budget.interval_s("picwish") / SUBMIT_SHARE + 0.002, \
        "runs again soon, not at the ceiling"


def test_paused_provider_admits_nothing_until_its_probe(make_rt):
    rt = make_rt(out_of_credit_probe_s=3600)
    job(rt, store=True)
    spend.pause(rt, "picwish", "insufficient credits")
    dispatch, token = woken_chain(rt)

    assert admission.admit(rt, dispatch, "picwish", token) == 0
    assert dispatch.sent[-1][3] == rt.settings.max_countdown_s, "looks again at the ceiling"
    rt.redis.hset(admission.prefix("picwish") + "pause", "probe_at", 0)
    assert admission.admit(rt, dispatch, "picwish", token) == 1, "one probe"


def test_an_operator_hold_admits_nothing_no_probe_lifts_it_and_resume_does(make_rt):
    rt = make_rt(out_of_credit_probe_s=3600)
    job(rt, store=True)
    assert spend.hold(rt, "picwish", "vendor incident")
    assert not spend.hold(rt, "picwish", "vendor incident"), "already held"
    spend.pause(rt, "picwish", "insufficient credits")
    rt.redis.hset(admission.prefix("picwish") + "pause", "probe_at", 0)  # a probe is due
    dispatch, token = woken_chain(rt)

    assert admission.admit(rt, dispatch, "picwish", token) == 0, "the hold comes first"
    assert dispatch.sent[-1][3] == rt.settings.max_countdown_s, "looks again at the ceiling"
    spend.unpause(rt, "picwish")  # what an accepted probe does: the operator's hold stays
    assert spend.held(rt, "picwish")["reason"] == "vendor incident"
    assert admission.admit(rt, dispatch, "picwish", token) == 0
    assert admission.resume(rt, dispatch=dispatch, provider="picwish")
    assert spend.held(rt, "picwish") is None
    assert admission.admit(rt, dispatch, "picwish", dispatch.sent[-1][2]) == 1


def _reserve_many(redis_url: str, job_json: str, attempts: int, results) -> None:
    rt = Runtime(Settings(redis_url=redis_url, picwish_daily_credit_limit=100))
    record = JobRecord.model_validate_json(job_json)
    granted = sum(spend.reserve(rt, record).refused is None for _ in range(attempts))
    results.put(granted)
    rt.close()


def test_four_processes_racing_never_reserve_past_the_cap(redis_url):
    record = JobRecord(provider="picwish", model="hd", source=JobSource(uri="x"))
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    procs = [context.Process(target=_reserve_many,
                             args=(redis_url, record.model_dump_json(), 40, results))
             for _ in range(4)]
    for proc in procs:
        proc.start()
    granted = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join()

    assert sum(granted) == 25, "100 credits at 4 credits a job"
    client = redis.Redis.from_url(redis_url)
    assert float(client.hget(f"eq:spend:picwish:{spend.utc_day()}", "total")) == 100
    client.close()


def test_settle_trues_up_to_the_reported_cost_and_learns_the_price(make_rt):
    rt = make_rt(hitpaw_expected_coins=250)
    record = JobRecord(provider="hitpaw", model="general_2x", source=JobSource(uri="x"))
    res = spend.reserve(rt, record)
    assert res.amount == 250
    spend.settle(rt, res, record.model, 75)

    assert spend.spent_today(rt, "hitpaw") == {"total": 75.0, "t:default": 75.0}
    assert spend.expected_cost(rt, "hitpaw", "general_2x") == 75
    spend.refund(rt, spend.reserve(rt, record))
    assert spend.spent_today(rt, "hitpaw")["total"] == 75.0


def test_a_reached_provider_cap_holds_admission_until_resumed(make_rt):
    rt = make_rt(picwish_daily_credit_limit=4)
    record = JobRecord(provider="picwish", model="hd", source=JobSource(uri="x"))
    assert spend.reserve(rt, record).refused is None
    refused = spend.reserve(rt, record)
    assert refused.refused == "provider"
    spend.hold_for_cap(rt, refused)

    limit, held_s = spend.admission_limit(rt, "picwish")
    assert limit == 0 and 0 < held_s <= spend.seconds_to_next_day() + 0.01
    assert admission.resume(rt, "picwish", RecordingDispatcher())
    assert spend.admission_limit(rt, "picwish") == (rt.settings.admission_batch_max, None)


def test_an_admitted_job_whose_submit_left_the_queue_unrun_is_queued_again(make_rt):
    # Issue 9: a submit reserved by a worker that was SIGKILLed came back only after the
    # visibility timeout (15 min). Queue is FIFO: of jobs admitted a minute ago and still
    # unclaimed, those with at least as many sent after them as the queue holds left it.
    rt = make_rt(submit_lost_after_s=30)
    ids = [job(rt, store=True).id for _ in range(5)]
    minute_ago = admission._now_ms() - 60_000
    for n in range(4):
        assert take(rt, now_ms=minute_ago + n).job_id == ids[n]
    take(rt)  # ids[4]: admitted just now
    rt.jobs.update(ids[1], lambda r: True, lambda r: {"submit_started_at": utcnow()})
    dispatch = RecordingDispatcher()
    dispatch.waiting = 2  # the newest two messages may still wait

    assert admission.sweep(rt, ["picwish"], dispatch) == 2

    assert admission.waiting(rt, "picwish")["interactive"] == 2, "ids 0 and 2 queued again"
    assert take(rt).job_id == ids[0] and take(rt).job_id == ids[2]
    dispatch.waiting = 4  # as many as were sent after ids[3], which may be one of them
    assert admission.sweep(rt, ["picwish"], dispatch) == 0
    dispatch.waiting = 3
    assert admission.sweep(rt, ["picwish"], dispatch) == 1, "three after it: not waiting"


def test_a_claimed_job_leaves_the_sent_set_without_asking_the_broker(make_rt):
    rt = make_rt(submit_lost_after_s=30)
    record = job(rt, store=True)
    take(rt, now_ms=admission._now_ms() - 60_000)
    rt.jobs.update(record.id, lambda r: True, lambda r: {"submit_started_at": utcnow()})

    class NoBroker(RecordingDispatcher):
        def waiting_submits(self):
            raise AssertionError("nothing to resend: the broker is not asked")

    assert admission.sweep(rt, ["picwish"], NoBroker()) == 0
    assert rt.redis.zcard(admission.prefix("picwish") + "sent") == 0


def test_admission_holds_the_rest_while_admit_ahead_submits_wait_for_a_worker(make_rt):
    rt = make_rt(admit_ahead=2)
    first, second, third = (job(rt, store=True) for _ in range(3))

    assert [take(rt).job_id for _ in range(2)] == [first.id, second.id]
    assert take(rt).kind == "ahead", "two submits already wait for a worker"
    assert admission.waiting(rt, "picwish")["interactive"] == 1

    admission.claimed(rt, first)  # a worker's submit claimed the first job
    assert take(rt).job_id == third.id


def test_a_run_held_by_admit_ahead_looks_again_shortly(make_rt):
    rt = make_rt(admit_ahead=1)
    ids = [job(rt, store=True).id for _ in range(2)]
    dispatch, token = woken_chain(rt)

    assert admission.admit(rt, dispatch, "picwish", token) == 1
    assert dispatch.sent[1] == ("submit", ids[0])
    assert dispatch.sent[2][0] == "admit" and dispatch.sent[2][3] == admission.AHEAD_RECHECK_S


def test_a_job_given_back_to_admission_frees_its_place_among_the_sent(make_rt):
    rt = make_rt(admit_ahead=1)
    first, _ = job(rt, store=True), job(rt, store=True)
    assert take(rt).job_id == first.id

    admission.push(rt, first, front=True)  # e.g. held by a spend cap before its paid call

    assert take(rt).job_id == first.id, "first in line again, and not held by itself"
    assert take(rt).kind == "ahead"
    assert admission.waiting(rt, "picwish")["interactive"] == 1


def test_a_job_leaving_flight_does_not_replace_a_chain_paced_by_the_budget(make_rt):
    rt = make_rt(picwish_max_rps=0.5)
    for _ in range(3):
        job(rt, store=True)
    dispatch, token = woken_chain(rt)
    assert admission.admit(rt, dispatch, "picwish", token) == 1
    assert dispatch.sent[-1][0] == "admit", "the chain sleeps until the next submit slot"
    sent = len(dispatch.sent)

    assert not admission.wake(rt, "picwish", dispatch, freed=True), "the budget holds it"
    assert len(dispatch.sent) == sent


def test_a_job_leaving_flight_wakes_a_chain_held_by_the_in_flight_cap(make_rt):
    rt = make_rt(picwish_max_in_flight=1)
    for _ in range(2):
        job(rt, store=True)
    dispatch, token = woken_chain(rt)
    assert admission.admit(rt, dispatch, "picwish", token) == 1
    assert dispatch.sent[-1][3] == rt.settings.max_countdown_s, "held by the cap"

    assert admission.wake(rt, "picwish", dispatch, freed=True), "a freed slot lifts it"
    assert dispatch.sent[-1][:2] == ("admit", "picwish") and dispatch.sent[-1][3] == 0


def test_a_run_holds_its_next_turn_so_polls_booked_meanwhile_do_not_push_it_back(make_rt):
    rt = make_rt(picwish_max_rps=2)
    ids = [job(rt, store=True).id for _ in range(3)]
    dispatch, token = woken_chain(rt)
    assert admission.admit(rt, dispatch, "picwish", token) == 1
    before = time.monotonic()
    *_, countdown = dispatch.sent[-1]

    assert not rt.budget.try_acquire("picwish", submit=False), "the line is held"
    poll_wait = rt.budget.wait_s("picwish")  # a refused poll books the next turn
    early = admission.BOOK_AHEAD_MS / 2000
    assert poll_wait >= countdown + early + rt.budget.interval_s("picwish") - 0.01, \
        "after the turn the chain holds"
    time.sleep(max(countdown - (time.monotonic() - before), 0))

    assert admission.admit(rt, dispatch, "picwish", token) == 1, "its turn was kept"
    assert [s[1] for s in dispatch.sent if s[0] == "submit"] == ids[:2]
    kind, _, again, next_countdown = dispatch.sent[-1]
    assert (kind, again) == ("admit", token)
    assert next_countdown >= poll_wait - (time.monotonic() - before), \
        "the next turn it holds comes after the poll's"


def test_a_run_woken_before_its_turn_keeps_the_turn(make_rt):
    rt = make_rt(picwish_max_rps=2)
    job(rt, store=True)
    dispatch, token = woken_chain(rt)
    assert rt.budget.try_acquire("picwish", submit=False)
    for _ in range(3):  # refused polls booked the next turns
        rt.budget.wait_s("picwish")
    assert admission.admit(rt, dispatch, "picwish", token) == 0, "a turn held after theirs"
    line = rt.redis.get(rt.budget.submit_keys("picwish")[3])

    assert admission.wake(rt, "picwish", dispatch), "a sleeping chain is brought forward"
    woken = dispatch.sent[-1][2]
    assert admission.admit(rt, dispatch, "picwish", woken) == 0, "its turn is not yet"
    assert rt.redis.get(rt.budget.submit_keys("picwish")[3]) == line, "no second turn held"
    kind, _, again, countdown = dispatch.sent[-1]
    assert (kind, again) == ("admit", woken) and countdown > 1.5, "back at the held turn"
