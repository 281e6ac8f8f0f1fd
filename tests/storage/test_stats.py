"""Stats: shared counters in one Redis hash, whole and fractional."""

from __future__ import annotations

import threading

import pytest

from storage.stats import STATS_KEY, Stats


@pytest.fixture
def stats(redis_client):
    return Stats(redis_client)


def test_nothing_counted_reads_empty(stats):
    assert stats.read() == {}


def test_int_counter_defaults_to_one(stats):
    stats.incr("stored")
    stats.incr("stored")
    stats.incr("requests:picwish:poll", 5)
    assert stats.read() == {"stored": 2.0, "requests:picwish:poll": 5.0}


def test_float_counter_adds_fractions(stats):
    stats.incr("cost:picwish", 0.25)
    stats.incr("cost:picwish", 1.5)
    assert stats.read()["cost:picwish"] == pytest.approx(1.75)


def test_a_float_counter_accepts_a_whole_amount(stats):
    stats.incr("cost:hitpaw", 0.5)
    stats.incr("cost:hitpaw", 2)  # a whole cost must not break the counter
    stats.incr("cost:hitpaw", 0.25)
    assert stats.read()["cost:hitpaw"] == pytest.approx(2.75)


def test_negative_amounts_subtract(stats):
    stats.incr("store_lag_count", 3)
    stats.incr("store_lag_count", -1)
    stats.incr("store_lag_s_sum", 2.5)
    stats.incr("store_lag_s_sum", -0.5)
    assert stats.read() == {"store_lag_count": 2.0, "store_lag_s_sum": pytest.approx(2.0)}


def test_read_returns_numbers(stats):
    stats.incr("stored")
    stats.incr("cost:picwish", 0.1)
    assert all(type(value) is float for value in stats.read().values())


def test_counters_live_in_one_hash_shared_by_every_client(redis_client, redis_url):
    import redis

    other = redis.Redis.from_url(redis_url)
    try:
        Stats(redis_client).incr("failed:rate_limited")
        Stats(other).incr("failed:rate_limited")
        assert redis_client.keys("*") == [STATS_KEY.encode()]
        assert Stats(other).read() == {"failed:rate_limited": 2.0}
    finally:
        other.close()


def test_concurrent_increments_are_not_lost(stats):
    def work():
        for _ in range(50):
            stats.incr("requests:hitpaw:submit")
            stats.incr("cost:hitpaw", 0.5)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stats.read() == {"requests:hitpaw:submit": 400.0, "cost:hitpaw": 200.0}
