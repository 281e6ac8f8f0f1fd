"""The resources one worker process (or producer) holds: clients created once, closed once.

Celery forks its pool processes, and sockets must not cross a fork: the runtime is made
lazily on first use in each process and dropped at ``worker_process_init``, the way arq
builds its context in ``on_startup``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import redis
import redis.asyncio
import requests
from celery.signals import worker_process_init, worker_process_shutdown
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import ExponentialBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

from providers import get_provider_class
from providers.base import Provider
from providers.errors import AuthFailed
from providers.urlguard import UrlGuard, UrlPolicy, guarded_session
from storage.durability import Durability
from storage.jobs import JobStore
from storage.objects import ObjectStore
from storage.stats import Stats
from tasks.budget import ProviderBudget
from tasks.schedule import DurationModel
from workers.constants import USER_AGENT
from workers.settings import Settings, get_settings

#: Connections one event loop's ``redis.asyncio`` client opens at most (others wait).
ASYNC_MAX_CONNECTIONS = 8
#: Attempts of a job-store command while Redis restarts or fails over (backoff to 2 s each).
STORE_RETRIES = 10


@dataclass
class Runtime:
    """Clients built from one ``Settings``; one per process."""

    settings: Settings
    redis: redis.Redis = field(init=False)
    jobs: JobStore = field(init=False)
    objects: ObjectStore = field(init=False)
    guard: UrlGuard = field(init=False)  # every URL a worker fetches or hands on
    http: requests.Session = field(init=False)  # downloads of results and sources, guarded
    stats: Stats = field(init=False)
    budget: ProviderBudget = field(init=False)
    durations: DurationModel = field(init=False)
    _providers: dict[str, Provider] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.redis = connect_redis(s)
        self.jobs = JobStore(self.redis, durability=claim_durability(s))
        self.objects = ObjectStore.from_settings(s)
        self.guard = UrlGuard(UrlPolicy.from_settings(s))
        self.http = guarded_session(self.guard, USER_AGENT)
        self.stats = Stats(self.redis)
        self.budget = ProviderBudget(s, self.redis)
        self.durations = DurationModel(self.redis)

    def provider(self, name: str) -> Provider:
        """The client of provider ``name``, built on first use."""
        if name not in self._providers:
            self._providers[name] = build_provider(name, self.settings)
        return self._providers[name]

    def close(self) -> None:
        for provider in self._providers.values():
            provider.close()
        self._providers.clear()
        self.http.close()
        self.redis.close()


def connect_redis(settings: Settings, single_connection: bool = False) -> redis.Redis:
    """A client of the job store: at ``REDIS_URL``, or the primary ``REDIS_SENTINELS`` name.

    ``single_connection`` gives a client whose commands all go over one connection (what
    ``WAIT`` needs to count the client's own writes).
    """
    options = {"socket_timeout": 10, "health_check_interval": 30,
               # ride through a restart or failover (about 15 s) instead of failing steps
               "retry": Retry(ExponentialBackoff(cap=2.0, base=0.1), STORE_RETRIES),
               "retry_on_error": [redis.ConnectionError, redis.TimeoutError]}
    if single_connection:
        options["max_connections"] = 1
    if not settings.redis_sentinels:
        if single_connection:
            pool = redis.BlockingConnectionPool.from_url(settings.redis_url, **options)
            return redis.Redis(connection_pool=pool)
        return redis.Redis.from_url(settings.redis_url, **options)
    login = parse_url(settings.redis_url)
    sentinel = Sentinel(_sentinel_addresses(settings), sentinel_kwargs={"socket_timeout": 5},
                        username=login.get("username"), password=login.get("password"))
    return sentinel.master_for(settings.redis_sentinel_master, db=login.get("db", 0), **options)


def connect_redis_async(settings: Settings, bounded: bool = True) -> redis.asyncio.Redis:
    """A ``redis.asyncio`` client of the job store (the producer's asyncio twins).

    Bound to the event loop it is first used on; the same retries as ``connect_redis``.
    ``bounded``: at most ``ASYNC_MAX_CONNECTIONS``, for commands; a client for pub/sub
    subscriptions (each holds its connection while it waits) must not be.
    """
    options = {"socket_timeout": 10, "health_check_interval": 30,
               "retry": AsyncRetry(ExponentialBackoff(cap=2.0, base=0.1), STORE_RETRIES),
               "retry_on_error": [redis.ConnectionError, redis.TimeoutError]}
    if not settings.redis_sentinels and not bounded:
        return redis.asyncio.Redis.from_url(settings.redis_url, **options)
    if not settings.redis_sentinels:
        # a bounded pool that waits for a free connection: a burst of coroutines reuses a
        # few connections instead of opening (and handshaking) one each on the loop
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=ASYNC_MAX_CONNECTIONS, timeout=None, **options)
        return redis.asyncio.Redis(connection_pool=pool)
    login = parse_url(settings.redis_url)
    sentinel = AsyncSentinel(_sentinel_addresses(settings), sentinel_kwargs={"socket_timeout": 5},
                             username=login.get("username"), password=login.get("password"))
    return sentinel.master_for(settings.redis_sentinel_master, db=login.get("db", 0), **options)


def _sentinel_addresses(settings: Settings) -> list[tuple[str, int]]:
    return [(host, int(port)) for host, _, port in
            (item.strip().rpartition(":") for item in settings.redis_sentinels.split(","))]


def claim_durability(settings: Settings) -> Durability | None:
    """How submit claims are confirmed durable (``CLAIM_DURABILITY``); None for ``none``."""
    if settings.claim_durability == "none":
        return None
    return Durability(connect_redis(settings, single_connection=True),
                      settings.claim_durability, settings.claim_wait_replicas,
                      settings.claim_wait_timeout_ms)


def build_provider(name: str, settings: Settings) -> Provider:
    """A client of provider ``name`` configured from ``settings``."""
    cls = get_provider_class(name)
    key = getattr(settings, f"{name}_api_key")
    if key is None:
        raise AuthFailed(f"{name.upper()}_API_KEY is not set", provider=name)
    kwargs = {
        "api_key": key,
        "base_url": getattr(settings, f"{name}_base_url"),
        "connect_timeout_s": settings.http_connect_timeout_s,
        "read_timeout_s": settings.http_read_timeout_s,
        "deadline_s": settings.http_deadline_s,
        "max_answer_bytes": settings.http_max_answer_bytes,
    }
    if name == "hitpaw":
        kwargs["result_ttl_s"] = settings.hitpaw_result_ttl_s
    if name == "picwish":  # its answers may carry the result itself (return_type=2)
        kwargs["max_answer_bytes"] = max(settings.http_max_answer_bytes,
                                         settings.picwish_max_inline_answer_bytes)
    return cls(**kwargs)


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """This process's runtime, made on first use from the environment's settings."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime(get_settings())
        return _runtime


def current_runtime() -> Runtime | None:
    """This process's runtime if one was made or set already, else None (nothing is made)."""
    with _lock:
        return _runtime


def set_runtime(runtime: Runtime | None) -> Runtime | None:
    """Replace this process's runtime (tests, embedded runs); returns the old one."""
    global _runtime
    with _lock:
        old, _runtime = _runtime, runtime
        return old


@worker_process_init.connect
def _fresh_after_fork(**_: object) -> None:
    set_runtime(None)


@worker_process_shutdown.connect
def _close_at_shutdown(**_: object) -> None:
    old = set_runtime(None)
    if old is not None:
        old.close()
