"""A backend's own Celery app, for the on_done tests: a second app, worker and queue.

It shares nothing with ``workers.app`` but the broker. Its one task records what it was
given in Redis (``CALLBACK_REDIS_URL``, list ``test:callbacks``) for the test to read.
"""

from __future__ import annotations

import json
import os

import redis
from celery import Celery

app = Celery("backend", broker=os.environ["CELERY_BROKER_URL"])
app.conf.update(task_serializer="json", accept_content=["json"], worker_hijack_root_logger=False)


@app.task(name="backend.make_thumbnail", bind=True)
def make_thumbnail(self, job: dict, size: int | None = None) -> None:
    """What a backend would chain on a finished job; here: note the call."""
    client = redis.Redis.from_url(os.environ["CALLBACK_REDIS_URL"])
    client.rpush("test:callbacks", json.dumps({"job": job, "size": size,
                                               "task_id": self.request.id,
                                               "argsrepr": getattr(self.request, "argsrepr",
                                                                   None),
                                               "queue": self.request.delivery_info.get(
                                                   "routing_key")}))
    client.close()
