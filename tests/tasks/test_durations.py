"""The duration model that times first polls, against real Redis."""

from __future__ import annotations

import pytest

from tasks.schedule import (
    DONE_AT_FIRST_POLL_SHRINK,
    MIN_SAMPLES,
    SAMPLE_SIZE,
    DurationModel,
    first_poll_delay_s,
    size_class,
)
from workers.settings import Settings


@pytest.fixture
def model(redis_client):
    return DurationModel(redis_client)


def test_no_prediction_until_enough_jobs_were_seen(model):
    for _ in range(MIN_SAMPLES - 1):
        model.observe("hitpaw", "face_2x", "s", done_s=10.0, last_in_progress_s=8.0)
    assert model.predict("hitpaw", "face_2x", "s") is None
    model.observe("hitpaw", "face_2x", "s", done_s=10.0, last_in_progress_s=8.0)
    assert model.predict("hitpaw", "face_2x", "s") == pytest.approx(9.0)


def test_estimate_is_the_midpoint_or_shrinks_when_done_at_first_look(model):
    assert model.observe("picwish", "hd", "s", 12.0, 10.0) == pytest.approx(11.0)
    assert model.observe("picwish", "hd", "s", 10.0, None) == pytest.approx(
        10.0 * DONE_AT_FIRST_POLL_SHRINK)


def test_prediction_is_the_80th_percentile_of_recent_jobs(model):
    for seconds in range(1, 21):  # 1..20 s, all found done at the first look
        model.observe("hitpaw", "general_2x", "m", seconds / DONE_AT_FIRST_POLL_SHRINK, None)
    assert model.predict("hitpaw", "general_2x", "m") == pytest.approx(17.0)


def test_kinds_are_learnt_apart_and_memory_is_bounded(model, redis_client):
    for _ in range(SAMPLE_SIZE + 50):
        model.observe("hitpaw", "face_4x", "l", 30.0, 20.0)
    model.observe("hitpaw", "face_4x", "s", 2.0, 1.0)
    assert model.predict("hitpaw", "face_4x", "l") == pytest.approx(25.0)
    assert model.predict("hitpaw", "face_4x", "s") is None
    assert redis_client.llen("eq:durations:hitpaw:face_4x:l") == SAMPLE_SIZE


def test_first_poll_waits_for_the_prediction_but_never_under_the_first_interval():
    settings = Settings(hitpaw_poll_interval_s=3.0, poll_jitter=0.0)
    assert first_poll_delay_s("hitpaw", settings, predicted_s=None) == 3.0
    assert first_poll_delay_s("hitpaw", settings, predicted_s=1.0) == 3.0
    assert first_poll_delay_s("hitpaw", settings, predicted_s=20.0) == 20.0
    assert first_poll_delay_s("hitpaw", settings, predicted_s=500.0) == settings.max_countdown_s


@pytest.mark.parametrize(("mp", "expected"), [(None, "any"), (0.5, "s"), (4, "m"), (20, "l")])
def test_size_classes(mp, expected):
    assert size_class(mp) == expected
