"""One Redis client per kombu channel, instead of one per broker command.

kombu's Redis transport (5.6) builds a new ``redis.Redis`` for every command it sends
outside its consumer (``Channel.conn_or_acquire``): each task a worker sends (the binding
lookup, the ``LPUSH``, the ``task-sent`` event), each task event the consumer publishes,
each ack. redis-py 8 builds the client's table of ~170 response callbacks in its
constructor (``CaseInsensitiveDict``), so one task sent cost ~1.2 ms of CPU here, of which
~0.45 ms went to building and dropping those clients. A client holds no state of its own
between commands (connections come from the channel's pool per command), so one per
channel pool does the same work. A new pool (the channel reconnected) gets a new client.
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis

_PATCHED = "_eq_reuses_clients"


def reuse_redis_clients() -> None:
    """Make kombu's Redis channels reuse one client per connection pool (idempotent)."""
    channel = kombu_redis.Channel
    if getattr(channel, _PATCHED, False):
        return
    create = channel._create_client

    def _create_client(self, asynchronous: bool = False):
        if asynchronous:  # built once per channel by kombu itself (``Channel.client``)
            return create(self, asynchronous=True)
        pool = self.pool
        client = self.__dict__.get("_eq_client")
        if client is None or client.connection_pool is not pool:
            client = self.__dict__["_eq_client"] = create(self)
        return client

    channel._create_client = _create_client
    setattr(channel, _PATCHED, True)
