"""What any poll schedule can do for the benchmark's paced jobs, with nothing known per job.

Scenario 1's paced jobs take 2-6 s (uniform, drawn by the sandbox whatever the input) and
HitPaw reports no progress, so a schedule can only give every job the same looks: the
first at some time (jittered as ``first_poll_delay_s`` jitters a prediction), then the
follow-ups of ``next_poll_delay_s``. For first looks across the range of durations this
plays seeded jobs through those two real functions and reports polls per job and the
median wait from a job's end to the look that saw it done. Whatever a duration model
learns, it only picks the first look: the row with the fewest polls under the issue's 1.3
shows the least wait it can buy there. No clock is read: the figures are exact for the seed.

Beside it, ``least_wait_p50_any_schedule`` is the least median wait of *any* schedule
within the same polls per job, ours or not (computed, not played): the gap between the two
is what a better schedule could still buy.
"""

from __future__ import annotations

import random
import statistics

from ops.bench.measure import rounded
from tasks.schedule import first_poll_delay_s, next_poll_delay_s
from workers.settings import Settings

PROVIDER = "hitpaw"  # scenario 1's provider: no progress in its answers
JOBS = 20_000
QUANTILES = (0.6, 0.65, 0.7, 0.72, 0.75, 0.78, 0.8, 0.85, 0.9)


def frontier(latency_s: tuple[float, float], settings: Settings, polls_bound: float, *,
             jobs: int = JOBS, seed: int = 1) -> dict:
    """One row per first look at a quantile of the uniform durations ``latency_s``, and the
    least median wait of a row within ``polls_bound`` polls per job."""
    low, high = latency_s
    rows = [_row(q, low + q * (high - low), latency_s, settings, jobs, seed) for q in QUANTILES]
    within = [row["wait_p50_s"] for row in rows if row["polls_per_job"] <= polls_bound]
    return {"jobs": jobs, "seed": seed, "polls_bound": polls_bound, "rows": rows,
            "least_wait_p50_within_polls_bound_s": min(within) if within else None,
            "least_wait_p50_any_schedule_s": rounded(
                least_wait_p50_any_schedule(latency_s, polls_bound), 3)}


def least_wait_p50_any_schedule(latency_s: tuple[float, float], polls_bound: float) -> float:
    """The least median wait (a job's end -> the look that sees it done) that any poll
    schedule, randomised or not, gets for uniform durations ``latency_s`` within
    ``polls_bound`` polls per job, when nothing is known per job.

    With nothing known per job, a schedule is a sequence of looks t1 < t2 < ... (a
    randomised one, a mix of sequences), the last at or after the longest job. A job
    waits at most ``w`` when it ends in the ``w`` before a look, so look j covers at most
    ``w`` of the range; and look j is paid by every job still running at look j-1, which
    costs at least (j - 1) x what look j covers (each earlier look's jobs run through the
    gap before it). So the share of jobs waiting at most ``w`` is at most the share that
    windows of ``w`` buy, the first free, the second at 1 x its share, the third at 2 x...,
    within ``polls_bound - 1``; the first ``w`` for which that reaches one half is the
    bound. Looks ending the range in steps of ``w`` (t_n = high, t_n-1 = high - w, ...)
    reach it: for 2-6 s and 1.25 polls, looks at 5 s and 6 s give a median wait of 1 s.
    """
    low, high = latency_s
    span = high - low
    if span <= 0:
        return 0.0

    def share_within(wait_s: float) -> float:
        window, extra, share, look = min(wait_s / span, 1.0), polls_bound - 1.0, 0.0, 0
        while window > 0 and share < 1.0 and (look == 0 or extra > 0):
            taken = 1.0 if look == 0 else min(1.0, extra / (look * window))
            share += taken * window
            extra -= taken * look * window
            look += 1
        return min(share, 1.0)

    lo_s, hi_s = 0.0, span
    for _ in range(60):  # bisection: share_within grows with the wait
        mid_s = (lo_s + hi_s) / 2
        lo_s, hi_s = (lo_s, mid_s) if share_within(mid_s) >= 0.5 else (mid_s, hi_s)
    return hi_s


def _row(quantile: float, first_s: float, latency_s: tuple[float, float], settings: Settings,
         jobs: int, seed: int) -> dict:
    rng = random.Random(seed)
    polls, waits = 0, []
    for _ in range(jobs):
        duration_s = rng.uniform(*latency_s)
        at_s = first_poll_delay_s(PROVIDER, settings, rng, predicted_s=first_s)
        count = 1
        while at_s < duration_s:
            at_s += next_poll_delay_s(PROVIDER, count, None, at_s, settings, rng)
            count += 1
        polls += count
        waits.append(at_s - duration_s)
    return {"first_look_quantile": quantile, "first_look_s": rounded(first_s, 3),
            "polls_per_job": rounded(polls / jobs, 3),
            "wait_p50_s": rounded(statistics.median(waits), 3)}
