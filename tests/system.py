"""A whole system for integration tests: real worker processes on real Redis, S3, sandbox.

``System`` starts ``enhance worker`` and ``enhance beat`` as subprocesses with the same
environment a deployment would set, and gives the test the producer API in-process.
Nothing of our code path is faked: tasks travel through the broker, countdowns are real.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from PIL import Image

from storage.jobs import JobRecord
from workers.app import app, celery_config
from workers.runtime import Runtime, set_runtime
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

FAST = {  # settings that make a test run in seconds, not minutes
    "HITPAW_POLL_INTERVAL_S": "0.2",
    "HITPAW_POLL_MAX_INTERVAL_S": "1",
    "PICWISH_POLL_INTERVAL_S": "0.2",
    "PICWISH_POLL_MAX_INTERVAL_S": "1",
    "MAX_COUNTDOWN_S": "5",
    "VISIBILITY_TIMEOUT_S": "60",
    "STALE_AFTER_S": "4",
    "POLL_GRACE_S": "1",
    "STORE_LEASE_S": "5",
    "HTTP_CONNECT_TIMEOUT_S": "1",
    "HTTP_READ_TIMEOUT_S": "2.5",
    "HTTP_DEADLINE_S": "2.9",  # a submit claim holds connect + deadline + LEASE_GRACE_S
    "RECONCILE_INTERVAL_S": "1",
    "HITPAW_MAX_RPS": "500",
    "PICWISH_MAX_RPS": "500",
    "WORKER_SOFT_SHUTDOWN_TIMEOUT_S": "0",
    "LOG_LEVEL": "INFO",
}


def image_bytes(width: int, height: int, image_format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 80, 200)).save(buffer, image_format)
    return buffer.getvalue()


class System:
    """The environment of one test's deployment and the processes running in it."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = {**os.environ, **env}
        self.settings = Settings(**{k.lower(): v for k, v in env.items()
                                    if k.lower() in Settings.model_fields})
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        # Fresh connections (and producers) for each deployment: the pooled ones may be to
        # another broker, or closed (kombu's "Acquire on closed pool") by an earlier test.
        app._pool = None
        app.amqp._producer_pool = None
        app.conf.update(celery_config(self.settings))
        # Each test flushes its Redis database, bindings included, while kombu remembers
        # what it declared and would publish into an exchange with no queue bound.
        with app.connection_for_write() as conn:
            for queue in app.amqp.queues.values():
                queue(conn.default_channel).declare()
        self.runtime = Runtime(self.settings)
        set_runtime(self.runtime)

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}-{len(self.procs)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "workers.cli", *args], cwd=ROOT,
                                env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # killable as a group, pool and all
        self.procs.append(proc)
        return proc

    def purge(self) -> None:
        """Empty the project's queues on the broker."""
        with app.connection_for_write() as conn:
            for queue in app.amqp.queues.values():
                queue(conn.default_channel).purge()

    def start_worker(self, queues: str | None = None, concurrency: int = 1,
                     **env: str) -> subprocess.Popen:
        """Start ``enhance worker`` and wait until it answers a ping."""
        node = f"w{uuid.uuid4().hex[:8]}@test"
        args = ["worker", "--concurrency", str(concurrency), "--hostname", node]
        if queues:
            args += ["--queues", queues]
        proc = self._spawn("worker", args, env)
        self._wait_ping(node, proc)
        return proc

    def _wait_ping(self, node: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.logs('worker')[-2000:]}")
            if app.control.ping(destination=[node], timeout=0.5):
                return
        raise RuntimeError("worker did not answer a ping in time")

    def start_beat(self, **env: str) -> subprocess.Popen:
        schedule = self.log_dir / f"beat-schedule-{uuid.uuid4().hex[:6]}"
        return self._spawn("beat", ["beat", "--schedule", str(schedule)], env)

    def enqueue(self, source, provider: str, model: str | None = None, **kwargs) -> str:
        """``tasks.producer.enqueue``, with reuse off unless the test asks for it.

        Tests enqueue one synthetic image many times as jobs meant to be paid for each;
        the tests of reuse itself (tests/tasks/test_reuse.py) pass ``reuse`` explicitly.
        """
        from tasks.producer import enqueue

        kwargs.setdefault("reuse", False)
        return enqueue(source, provider, model, runtime=self.runtime, **kwargs)

    def job(self, job_id: str) -> JobRecord:
        return self.runtime.jobs.get(job_id)

    def wait(self, job_ids: list[str], timeout_s: float = 60, until=None) -> list[JobRecord]:
        """Wait until every job is final (or ``until(records)`` holds); return the records."""
        until = until or (lambda records: all(r.state.final for r in records))
        deadline = time.monotonic() + timeout_s
        while True:
            records = self.runtime.jobs.get_many(job_ids)
            if until(records) or time.monotonic() > deadline:
                return records
            time.sleep(0.1)

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL a worker and its pool processes: no warm shutdown, nothing requeued."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def logs(self, name: str) -> str:
        return "\n".join(p.read_text() for p in sorted(self.log_dir.glob(f"{name}-*.log")))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            with contextlib.suppress(ProcessLookupError):  # pool processes left behind
                os.killpg(proc.pid, signal.SIGKILL)
        set_runtime(None)
        self.runtime.close()
