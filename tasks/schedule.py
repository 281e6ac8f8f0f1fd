"""When to poll next: a per-provider schedule with backoff, jitter and a ceiling.

Polling is waiting, not failing: these countdowns never touch a task's retry budget.
"""

from __future__ import annotations

import random

import redis

from providers.base import JobStatus
from storage.jobs import KEY_PREFIX
from workers.settings import Settings

BACKOFF_FACTOR = 1.5  # each poll of a job still in progress waits this much longer
PROGRESS_MIN = 5  # below this progress (percent) an estimate of the rest is noise
MAX_EXPONENT = 1000  # backoff powers stop growing here: past it a float power overflows
#: A job still running when polled is next looked at after this share of the time it has
#: run so far (never later than the backoff would): its overshoot stays a fixed share of
#: its duration. The first poll is timed at an upper quantile of learnt durations, so the
#: jobs still running then are the tail, which mostly ends within a fifth of that time;
#: a fixed 3 s step instead made them wait up to 3 s past their end. From the third poll
#: on the share grows by BACKOFF_FACTOR per poll, so a job far longer than learnt (or with
#: nothing learnt yet) costs at most three polls more than the plain backoff (two past 30 s).
FOLLOW_UP_SHARE = 0.2
FOLLOW_UP_FLOOR_SHARE = 0.25  # ... but never sooner than this share of the first interval
#: A first poll timed by a prediction is jittered by this share of ``poll_jitter``: the
#: submits already spread the polls, and a wider spread only moves polls off the prediction.
PREDICTED_JITTER_SHARE = 0.25


def base_interval_s(provider: str, settings: Settings) -> tuple[float, float]:
    """The first interval and the largest one for ``provider``."""
    return (
        getattr(settings, f"{provider}_poll_interval_s"),
        getattr(settings, f"{provider}_poll_max_interval_s"),
    )


def first_poll_delay_s(
    provider: str,
    settings: Settings,
    rng: random.Random | None = None,
    predicted_s: float | None = None,
) -> float:
    """The countdown of the first poll after a submit.

    With a prediction learnt from finished jobs (``DurationModel``), the first poll goes
    when the job is likely done, so most jobs need one poll; without one, after the
    provider's first interval.
    """
    first, _ = base_interval_s(provider, settings)
    if predicted_s is None or predicted_s <= first:
        return jittered(first, settings, rng)
    return jittered(predicted_s, settings, rng, share=PREDICTED_JITTER_SHARE)


def next_poll_delay_s(
    provider: str,
    poll_count: int,
    status: JobStatus | None,
    elapsed_s: float,
    settings: Settings,
    rng: random.Random | None = None,
) -> float:
    """The countdown before polling a job that is still in progress.

    Args:
        provider: the provider's name.
        poll_count: polls made so far for this job.
        status: the last status, whose ``progress`` (where given) estimates the rest.
        elapsed_s: seconds since the job was submitted; without progress, the next poll
            comes after ``FOLLOW_UP_SHARE`` of it (growing from the third poll) when that
            is sooner than the backoff.
        settings: the poll settings.
        rng: random source for the jitter (tests pass a seeded one).
    """
    first, ceiling = base_interval_s(provider, settings)
    delay = first * BACKOFF_FACTOR ** min(max(poll_count - 1, 0), MAX_EXPONENT)
    share = 1.0
    if elapsed_s > 0 and (status is None or status.progress is None):  # nothing better
        growth = BACKOFF_FACTOR ** min(max(poll_count - 2, 0), MAX_EXPONENT)
        follow_up = max(FOLLOW_UP_SHARE * growth * elapsed_s, FOLLOW_UP_FLOOR_SHARE * first)
        if follow_up < delay:  # already spread by the elapsed times: jitter it less
            delay, share = follow_up, PREDICTED_JITTER_SHARE
    estimate = remaining_from_progress(status, elapsed_s)
    if estimate is not None:
        delay, share = max(first, estimate), 1.0
    return jittered(min(delay, ceiling), settings, rng, share=share)


def remaining_from_progress(status: JobStatus | None, elapsed_s: float) -> float | None:
    """Seconds left if the job keeps its pace so far, from its reported progress."""
    if status is None or status.progress is None or status.progress < PROGRESS_MIN:
        return None
    progress = min(status.progress, 99)
    return elapsed_s * (100 - progress) / progress


def jittered(delay_s: float, settings: Settings, rng: random.Random | None = None,
             share: float = 1.0) -> float:
    """``delay_s`` spread by +/- ``share`` x ``poll_jitter`` and kept under the countdown
    ceiling."""
    spread = delay_s * settings.poll_jitter * share
    value = delay_s + (rng or random).uniform(-spread, spread)
    return round(min(max(value, 0.05), settings.max_countdown_s), 3)


def retry_delay_s(attempt: int, settings: Settings, retry_after_s: float | None = None) -> float:
    """Backoff for a transient failure: exponential, honouring ``Retry-After``.

    With ``retry_after_s`` the jitter only lengthens the wait, so the retry never comes
    sooner than the provider asked (unless that is past ``max_countdown_s``).
    """
    delay = min(2.0 ** min(attempt, MAX_EXPONENT), settings.max_countdown_s)
    if retry_after_s is None:
        return jittered(delay, settings)
    delay = max(delay, retry_after_s)
    delay += random.uniform(0, delay * settings.poll_jitter)
    return round(min(delay, settings.max_countdown_s), 3)


SAMPLE_SIZE = 100  # recent jobs remembered per provider, model and input size
MIN_SAMPLES = 5  # fewer than this and there is no prediction
#: Poll once four jobs in five of this kind would be done. Learnt estimates put the jobs
#: done at the first look just under it, so the quantile jumps between them and the ones
#: seen running; 0.8 keeps polls per job under 1.3 with that noise (0.75 averaged 1.33
#: in a 2-6 s model of tests/tasks/test_lean_polling.py) and the tail's follow-up
#: (FOLLOW_UP_SHARE) keeps the wait after a job ends short.
PREDICT_QUANTILE = 0.8
DONE_AT_FIRST_POLL_SHRINK = 0.8  # a job done at its first look finished earlier than that
#: A job whose first poll ran later than this share of the time to when it was due (a
#: busy worker), and later than ``LATE_LOOK_MIN_S``, teaches the model nothing: how many
#: jobs a late first look finds done depends on how late it ran, not on how long they
#: take. Counted from when they ran, the late polls of a 500-job burst had pushed the
#: prediction of 2-6 s jobs to 9.6 s; counted from when they were due and shrunk, a seeded
#: replay pulls it under the 3 s first interval (tests/tasks/test_duration_learning.py).
#: Only the late look that finds the job done is not enough: the benchmark's burst then
#: taught only jobs done at an on-time first look, the short ones (41 samples, 80th
#: percentile 2.8 s).
LATE_LOOK_SHARE = 0.1
#: ... and later than this: a busy machine and Celery's timers make polls a few hundred ms
#: late without any queue (the tests' 0.2 s schedule learnt nothing at a load of 5).
LATE_LOOK_MIN_S = 1.0


def first_look_late(late_s: float, due_s: float) -> bool:
    """Whether a job's first poll, due ``due_s`` after the submit, ran so late
    (``late_s`` after that) that the job must not teach the duration model."""
    return late_s > max(LATE_LOOK_SHARE * due_s, LATE_LOOK_MIN_S)


def size_class(megapixels: float | None) -> str:
    """Coarse input-size class: jobs on bigger inputs take longer."""
    if megapixels is None:
        return "any"
    if megapixels < 1:
        return "s"
    return "m" if megapixels < 8 else "l"


class DurationModel:
    """Learns how long a provider takes, from the jobs already done, to time first polls.

    A job is only seen done at a poll, so its true duration lies between its last
    in-progress poll and the poll that found it done: the model keeps the midpoint, or,
    when the first look already found it done, a bit less than that look (so predictions
    can come down as well as go up). The look that found the job done counts from when it
    was due, not from when it ran, and a job whose first look ran late teaches nothing
    (``first_look_late``): the model learns the provider's time, not our queueing.
    """

    def __init__(self, client: redis.Redis, prefix: str = KEY_PREFIX + "durations:") -> None:
        self._redis = client
        self._prefix = prefix

    def _key(self, provider: str, model: str, size: str) -> str:
        return f"{self._prefix}{provider}:{model}:{size}"

    def observe(self, provider: str, model: str, size: str, done_s: float,
                last_in_progress_s: float | None) -> float:
        """Record one finished job; return the duration estimate kept."""
        if last_in_progress_s is None:
            estimate = done_s * DONE_AT_FIRST_POLL_SHRINK
        else:
            estimate = (last_in_progress_s + done_s) / 2
        key = self._key(provider, model, size)
        with self._redis.pipeline() as pipe:
            pipe.lpush(key, round(estimate, 3))
            pipe.ltrim(key, 0, SAMPLE_SIZE - 1)
            pipe.execute()
        return estimate

    def predict(self, provider: str, model: str, size: str,
                quantile: float | None = None) -> float | None:
        """Seconds after submit by which most such jobs are done; None if too few seen.

        ``quantile`` (default ``PREDICT_QUANTILE``) is raised while the budget is the
        bottleneck: a later first poll finds more jobs done, so fewer polls take slots.
        """
        samples = sorted(float(v) for v in self._redis.lrange(self._key(provider, model, size),
                                                              0, -1))
        if len(samples) < MIN_SAMPLES:
            return None
        quantile = PREDICT_QUANTILE if quantile is None else quantile
        return samples[min(int(len(samples) * quantile), len(samples) - 1)]
