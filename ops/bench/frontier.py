"""What any poll schedule can do for the benchmark's paced jobs, with nothing known per job.

Scenario 1's paced jobs take 2-6 s (uniform, drawn by the sandbox whatever the input) and
HitPaw reports no progress, so a schedule can only give every job the same looks: the
first at some time (jittered as ``first_poll_delay_s`` jitters a prediction), then the
follow-ups of ``next_poll_delay_s``. For first looks across the range of durations this
plays seeded jobs through those two real functions and reports polls per job and the
median wait from a job's end to the look that saw it done. Whatever a duration model
learns, it only picks the first look: the row with the fewest polls under the issue's 1.3
shows the least wait it can buy there. No clock is read: the figures are exact for the seed.
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
            "least_wait_p50_within_polls_bound_s": min(within) if within else None}


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
