"""After a real run with distinctive API keys and webhook secret, no surface holds them.

The keys reach the worker as an operator might paste them: HitPaw's with a trailing
newline, PicWish's with a leading space. Jobs run through both providers, one of them
failing, one of them signing a webhook delivery with ``WEBHOOK_SECRET``. Then every surface is scanned: the worker's and Flower's logs, every Redis
command sent during the run (Celery messages with their args, kwargs and headers, job
records, events: Redis MONITOR, base64 bodies decoded), the job records and
``enhance status --json``, Flower's task API, the Prometheus metrics and reprs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
import redis
import requests
from prometheus_client import CollectorRegistry, generate_latest

from providers.sandbox import SandboxConfig, SandboxServer
from tasks.producer import verify_webhook
from tests.receiver import Receiver
from tests.system import ROOT, image_bytes
from workers.metrics import JobCollector

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HITPAW_KEY = "hpk-DISTINCT-5ecr3t-9f8e7d6c5b4a"
PICWISH_KEY = "pwk-DISTINCT-5ecr3t-0a1b2c3d4e5f"
WEBHOOK_KEY = b"WHSEC-DISTINCT-5ecr3t-1f2e3d4c"  # the webhook secret's bytes...
WEBHOOK_SECRET = "whsec_" + base64.b64encode(WEBHOOK_KEY).decode()  # ...as WEBHOOK_SECRET
KEYS = (HITPAW_KEY, PICWISH_KEY, WEBHOOK_KEY.decode(), WEBHOOK_SECRET[6:])
_BASE64 = re.compile(rb"[A-Za-z0-9+/]{24,}={0,2}")


@pytest.fixture
def sandbox():
    """The sandbox, accepting only the distinctive keys (overrides conftest's)."""
    config = SandboxConfig(processing_time_s=(0.05, 0.2), picwish_qps=None,
                           hitpaw_key=HITPAW_KEY, picwish_key=PICWISH_KEY)
    with SandboxServer(config) as server:
        yield server


@pytest.fixture
def system_env(system_env):
    return {**system_env, "WEBHOOK_SECRET": WEBHOOK_SECRET}


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


class Monitor:
    """Every command Redis receives for one database while the block runs."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.db = self.client.connection_pool.connection_kwargs.get("db", 0)
        self.commands: list[bytes] = []
        self._stop = f"stop-monitor-{time.monotonic_ns()}"
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    def _run(self) -> None:
        with self.client.monitor() as monitor:
            self._ready.set()
            for command in monitor.listen():
                if self._stop in command["command"]:
                    return
                if command.get("db") == self.db:
                    self.commands.append(command["command"].encode("utf-8", "replace"))

    def __enter__(self) -> Monitor:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.echo(self._stop)
        self._thread.join(30)
        self.client.close()


def decoded(blob: bytes) -> bytes:
    """``blob`` plus the decoding of every base64 run in it (Celery message bodies)."""
    parts = [blob]
    for match in _BASE64.finditer(blob.replace(b"\\", b"")):
        try:
            parts.append(base64.b64decode(match.group(0) + b"==", validate=False))
        except (binascii.Error, ValueError):
            continue
    return b"\n".join(parts)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_flower(system, port: int) -> subprocess.Popen:
    return system._spawn("flower", ["flower", "--address", "127.0.0.1", "--port", str(port)],
                         {"FLOWER_UNAUTHENTICATED_API": "true"})


def wait_for(what: str, check, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = check()
        except requests.RequestException:
            result = None
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_no_surface_holds_an_api_key_after_a_run(system, sandbox, receiver):
    env = {"HITPAW_API_KEY": HITPAW_KEY + "\n", "PICWISH_API_KEY": " " + PICWISH_KEY}
    system.env.update(env)
    flower_url = f"http://127.0.0.1:{free_port()}"
    start_flower(system, int(flower_url.rsplit(":", 1)[1]))
    wait_for("Flower", lambda: requests.get(flower_url + "/healthcheck", timeout=2).ok)
    with Monitor(system.settings.redis_url) as monitor:
        system.start_worker(concurrency=2)
        long_url = sandbox.sample_url("product.png") + "?pad=" + "p" * 520
        job_ids = [
            system.enqueue(image_bytes(64, 48), "hitpaw", "general_2x"),
            system.enqueue(long_url, "picwish", "hd"),  # downloaded by the worker
            system.enqueue(sandbox.sample_url("missing.png") + "?pad=" + "m" * 520, "picwish"),
            system.enqueue(image_bytes(32, 32), "picwish", webhook=receiver.url()),  # signed
        ]
        records = system.wait(job_ids, timeout_s=90)
        [delivery] = receiver.wait_for(1)
    assert [r.state.value for r in records] == ["succeeded", "succeeded", "failed",
                                                "succeeded"], [r.error for r in records]
    assert verify_webhook(delivery.body, delivery.headers, WEBHOOK_SECRET)  # it was used
    submits = [r for r in sandbox.requests() if r.kind == "submit"]
    assert len(submits) == 3  # both keys worked, stripped (the sandbox accepts nothing else)

    surfaces: dict[str, bytes] = {
        "worker and flower logs": (system.logs("worker") + system.logs("flower")).encode(),
        "redis commands": decoded(b"\n".join(monitor.commands)),
        "job records": "\n".join(r.model_dump_json() for r in records).encode(),
        "settings and client reprs": repr((system.runtime.settings,
                                           system.runtime.provider("hitpaw"),
                                           system.runtime.provider("picwish"))).encode(),
    }
    assert len(monitor.commands) > 50  # the run really went through Redis while we listened
    for job_id in job_ids:
        status = subprocess.run([sys.executable, "-m", "workers.cli", "status", job_id, "--json"],
                                cwd=ROOT, env={**system.env, **env}, capture_output=True,
                                timeout=60)
        assert status.returncode == 0, status.stderr
        surfaces[f"enhance status {job_id}"] = status.stdout + status.stderr
    registry = CollectorRegistry()
    registry.register(JobCollector(system.runtime))
    surfaces["metrics"] = generate_latest(registry)
    tasks = wait_for("Flower to have seen the tasks", lambda: (
        lambda data: data if len(data) >= 6 else None)(
        requests.get(flower_url + "/api/tasks", timeout=5).json()))
    surfaces["flower tasks"] = json.dumps(tasks).encode()
    surfaces["flower workers"] = requests.get(flower_url + "/api/workers", timeout=5).content

    for name, text in surfaces.items():
        for key in KEYS:
            assert key.encode() not in text, f"{name} holds an API key or webhook secret"
    # The scan sees what it scans: the submit message's args, from its base64 body.
    assert f'[["{job_ids[0]}"'.encode() in surfaces["redis commands"]
    assert records[2].error.code == "invalid_input"
