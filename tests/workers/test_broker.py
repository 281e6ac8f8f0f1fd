"""kombu's Redis channels reuse one client per connection pool (``workers.broker``)."""

from __future__ import annotations

import redis
from kombu import Connection

import workers.app  # noqa: F401  (creating the app applies the reuse)
from workers.broker import reuse_redis_clients


def test_a_channel_reuses_its_client_until_its_pool_changes(redis_url):
    reuse_redis_clients()  # idempotent
    with Connection(redis_url) as conn:
        channel = conn.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        assert first.connection_pool is channel.pool
        channel._disconnect_pools()  # what kombu does when the connection is lost
        again = channel._create_client()
        assert again is not first
        assert again.connection_pool is channel.pool


def test_messages_still_reach_their_queue(redis_url):
    with Connection(redis_url) as conn:
        queue = conn.SimpleQueue("eq-broker-test")
        for i in range(3):
            queue.put({"n": i})
        assert [queue.get(timeout=5).payload["n"] for _ in range(3)] == [0, 1, 2]
        queue.close()
    redis.Redis.from_url(redis_url).delete("eq-broker-test")
