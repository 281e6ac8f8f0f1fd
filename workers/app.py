"""The Celery app: its configuration comes from ``Settings`` and nowhere else.

The broker is Redis by default (RabbitMQ works too); there is no result backend, because
the truth about a job lives in the job store, not in Celery. Every task is late-acked and
requeued when its worker dies, and every countdown stays far below the Redis visibility
timeout (the settings refuse anything else), so a scheduled poll is never delivered twice
by the broker itself.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from workers.broker import reuse_redis_clients
from workers.constants import (
    ADMIT_QUEUE,
    ALL_QUEUES,
    MAINTENANCE_QUEUE,
    NOTIFY_QUEUE,
    POLL_QUEUE,
    STORE_QUEUE,
    SUBMIT_QUEUE,
)
from workers.settings import Settings, get_settings

#: Each task goes to its queue by name alone. Celery then publishes to the broker's default
#: (anonymous) exchange, which delivers by queue name: on Redis one ``LPUSH``, where naming
#: the queue's own direct exchange cost a read of that exchange's bindings (``SMEMBERS``)
#: for every task sent, and dropped the message if the bindings were gone (a flushed or
#: failed-over Redis). Each queue keeps its direct exchange for consumers.
TASK_ROUTES = {
    name: {"queue": queue}
    for name, queue in (("enhance.admit", ADMIT_QUEUE), ("enhance.submit", SUBMIT_QUEUE),
                        ("enhance.poll", POLL_QUEUE), ("enhance.store", STORE_QUEUE),
                        ("enhance.reuse", STORE_QUEUE), ("enhance.notify", NOTIFY_QUEUE),
                        ("enhance.reconcile", MAINTENANCE_QUEUE),
                        ("enhance.notify_sweep", MAINTENANCE_QUEUE))
}


def celery_config(settings: Settings) -> dict:
    """The Celery configuration for ``settings``."""
    transport = {"visibility_timeout": settings.visibility_timeout_s}
    if settings.celery_broker_url.startswith("sentinel://"):
        transport["master_name"] = (settings.broker_sentinel_master
                                    or settings.redis_sentinel_master)
    return {
        "broker_url": settings.celery_broker_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": settings.broker_connection_max_retries,
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_queues": [Queue(name, Exchange(name, type="direct"), routing_key=name)
                        for name in ALL_QUEUES],
        "task_default_queue": SUBMIT_QUEUE,
        "task_routes": TASK_ROUTES,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        # Late-acked store tasks run for minutes: a reserved one would age towards the
        # visibility timeout behind them. Countdown polls are not bounded by this anyway.
        "worker_prefetch_multiplier": settings.worker_prefetch_multiplier,
        **task_time_limits(settings),
        "worker_eta_task_limit": settings.worker_eta_task_limit,
        "worker_soft_shutdown_timeout": settings.worker_soft_shutdown_timeout_s,
        "worker_enable_soft_shutdown_on_idle": True,
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "reconcile": {
                "task": "enhance.reconcile",
                "schedule": settings.reconcile_interval_s,
                "options": {"expires": settings.reconcile_interval_s},
            },
            "notify-sweep": {  # re-sends webhooks and callbacks a lost worker left owed
                "task": "enhance.notify_sweep",
                "schedule": settings.reconcile_interval_s,
                "options": {"expires": settings.reconcile_interval_s},
            },
        },
    }


def task_time_limits(settings: Settings) -> dict[str, int]:
    """Soft and hard time limits of every task, inside the visibility timeout.

    A task still running when the broker's visibility timeout passes is delivered again;
    the hard limit ends it first (its lease lapses and reconcile re-drives the job), and
    the soft one lets it release what it holds before that.
    """
    hard_s = int(settings.visibility_timeout_s * 0.8)
    return {"task_time_limit": hard_s, "task_soft_time_limit": max(1, hard_s - max(5, hard_s // 10))}


def create_app(settings: Settings | None = None) -> Celery:
    """A Celery app configured from ``settings`` (the environment's by default)."""
    reuse_redis_clients()
    celery = Celery("enhance", include=["tasks.definitions"])
    celery.conf.update(celery_config(settings or get_settings()))
    return celery


app = create_app()
