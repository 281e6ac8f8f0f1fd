"""The Celery configuration: delivery guarantees, routes and the beat schedule."""

from __future__ import annotations

import pytest
from celery.app.defaults import DEFAULTS

import tasks.definitions  # noqa: F401  (registers the tasks)
from workers.app import TASK_ROUTES, celery_config, create_app
from workers.constants import (
    ADMIT_QUEUE,
    ALL_QUEUES,
    MAINTENANCE_QUEUE,
    NOTIFY_QUEUE,
    POLL_QUEUE,
    STORE_QUEUE,
    SUBMIT_QUEUE,
)
from workers.settings import Settings

EXPECTED_QUEUES = {
    "enhance.admit": ADMIT_QUEUE,
    "enhance.submit": SUBMIT_QUEUE,
    "enhance.poll": POLL_QUEUE,
    "enhance.store": STORE_QUEUE,
    "enhance.reuse": STORE_QUEUE,
    "enhance.notify": NOTIFY_QUEUE,
    "enhance.reconcile": MAINTENANCE_QUEUE,
    "enhance.notify_sweep": MAINTENANCE_QUEUE,
}


@pytest.fixture
def settings():
    return Settings(
        celery_broker_url="amqp://guest@rabbit//", visibility_timeout_s=1200,
        max_countdown_s=120, worker_eta_task_limit=777, reconcile_interval_s=45,
        worker_soft_shutdown_timeout_s=12,
    )


@pytest.fixture
def config(settings):
    return celery_config(settings)


@pytest.fixture
def app(settings):
    return create_app(settings)


def test_every_key_is_a_celery_setting(config):
    assert [key for key in config if key not in DEFAULTS] == []


def test_tasks_are_acked_late_and_requeued_when_a_worker_dies(app):
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True


def test_visibility_timeout_comes_from_settings(app):
    assert app.conf.broker_transport_options["visibility_timeout"] == 1200
    assert app.conf.broker_url == "amqp://guest@rabbit//"


def test_worker_limits_come_from_settings(app):
    assert app.conf.worker_eta_task_limit == 777
    assert app.conf.worker_soft_shutdown_timeout == 12


def test_json_only_and_no_result_backend(app):
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]
    assert app.conf.result_backend is None
    assert app.conf.task_ignore_result is True


def test_every_queue_is_declared(app):
    assert [queue.name for queue in app.conf.task_queues] == list(ALL_QUEUES)
    assert app.conf.task_default_queue == SUBMIT_QUEUE


@pytest.mark.parametrize(("task", "queue"), sorted(EXPECTED_QUEUES.items()))
def test_each_task_is_routed_to_its_queue(app, task, queue):
    assert app.amqp.router.route({}, task, (), {})["queue"].name == queue


@pytest.mark.parametrize(("task", "queue"), sorted(EXPECTED_QUEUES.items()))
def test_each_task_message_lands_in_its_queue_by_name_alone(redis_url, redis_client, task,
                                                            queue):
    """Sent through a real Redis broker whose exchange bindings are gone (a flushed or
    failed-over Redis; kombu remembers it declared them), a task still lands in its queue
    and no other: it goes by queue name, with no binding read per message."""
    app = create_app(Settings(celery_broker_url=redis_url))
    app.send_task(task, args=["job-1"])
    for binding in redis_client.keys("_kombu.binding.*"):
        redis_client.delete(binding)
    app.send_task(task, args=["job-2"])
    assert {name: redis_client.llen(name) for name in ALL_QUEUES} == {
        name: 2 if name == queue else 0 for name in ALL_QUEUES}
    app.close()


def test_every_registered_task_has_a_route(app):
    ours = {name for name in app.tasks if name.startswith("enhance.")}
    assert ours == set(EXPECTED_QUEUES)
    assert set(TASK_ROUTES) == ours


@pytest.mark.parametrize(("entry_name", "task"), [("reconcile", "enhance.reconcile"),
                                                  ("notify-sweep", "enhance.notify_sweep")])
def test_beat_runs_reconcile_and_the_notify_sweep_on_the_maintenance_queue(app, entry_name,
                                                                         task):
    entry = app.conf.beat_schedule[entry_name]
    assert entry["task"] == task
    assert entry["task"] in app.tasks
    assert entry["schedule"] == 45
    assert entry["options"]["expires"] == 45  # a missed run is dropped, not piled up
    assert app.amqp.router.route(entry["options"], entry["task"], (), {})["queue"].name == (
        MAINTENANCE_QUEUE
    )


def test_config_has_nothing_shared_between_calls(settings):
    first, second = celery_config(settings), celery_config(settings)
    first["broker_transport_options"]["visibility_timeout"] = 1
    first["beat_schedule"]["reconcile"]["schedule"] = 1
    assert second["broker_transport_options"]["visibility_timeout"] == 1200
    assert second["beat_schedule"]["reconcile"]["schedule"] == 45
