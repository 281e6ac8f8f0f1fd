"""``enqueue`` and ``enqueue_many`` with the broker out of reach and the job store up: the
jobs are recorded and wait in their admission queues, the call raises ``BrokerUnavailable``
carrying their ids (so a retry does not record them twice), and reconcile starts them once
a broker answers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from storage.jobs import JobState
from tasks import admission, producer
from tests.system import ROOT

pytestmark = pytest.mark.integration

_ENQUEUE = """
import json, sys
from tasks import producer
from tests.system import image_bytes
sources = [image_bytes(8 + i, 8) for i in range(int(sys.argv[1]))]
try:
    if len(sources) == 1:
        ids = [producer.enqueue(sources[0], "picwish", reuse=False)]
    else:
        ids = producer.enqueue_many([{"source": s, "provider": "picwish"} for s in sources],
                                    reuse=False)
    print(json.dumps({"returned": ids}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "code": getattr(exc, "code", None),
                      "message": str(exc), "job_ids": getattr(exc, "job_ids", None)}))
"""


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return listener.getsockname()[1]


@pytest.mark.parametrize("count", [1, 3])
def test_jobs_recorded_without_a_broker_are_named_and_started_by_reconcile(system, count):
    env = {**system.env, "CELERY_BROKER_URL": f"redis://127.0.0.1:{_closed_port()}/0"}
    done = subprocess.run([sys.executable, "-c", _ENQUEUE, str(count)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)

    assert answer["error"] == "BrokerUnavailable", answer
    assert answer["code"] == "broker_unavailable"
    listed = producer.list_jobs(runtime=system.runtime).jobs
    assert sorted(answer["job_ids"]) == sorted(r.id for r in listed)
    assert len(listed) == count and {r.state for r in listed} == {JobState.QUEUED}
    assert answer["job_ids"][0] in answer["message"] and "do not enqueue" in answer["message"]
    assert admission.waiting(system.runtime, "picwish") and \
        sum(admission.waiting(system.runtime, "picwish").values()) == count
    # the chain the failed wake claimed is given up: the next wake sends a run at once
    assert not system.runtime.redis.exists(admission.prefix("picwish") + "chain")

    system.start_worker()
    system.start_beat()  # reconcile: no enqueue comes to wake admission
    records = system.wait(answer["job_ids"], 60)
    assert [r.state for r in records] == [JobState.SUCCEEDED] * count, \
        [(r.state, r.error) for r in records]
