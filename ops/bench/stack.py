"""The system under test, started for real on loopback: services, sandbox and workers.

``Stack`` starts a private ``redis-server`` (``workers.embedded.embedded_redis``), moto's
S3 server and the provider sandbox, each as a process of its own so their CPU and memory
never mix with the workers' or the bench's. ``Stack.worker`` starts ``enhance worker``
processes (a worker host is ``--concurrency 2``) with the environment a deployment would
set, the way ``tests/system.py`` does; the bench process itself is the producer.

Every process is started in a session of its own and stopped by its own id.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import psutil
import redis
import requests

from ops.bench.measure import process_tree
from providers.sandbox import DEFAULT_HITPAW_KEY, DEFAULT_PICWISH_KEY
from workers.constants import ALL_QUEUES
from workers.embedded import LOOPBACK, embedded_redis, free_port

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
BUCKET = "bench-results"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def wait_until(check, timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    """Call ``check()`` until it is true; ``RuntimeError`` naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval_s)
    raise RuntimeError(f"{what} did not happen within {timeout_s:.0f} s")


def http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code < 500
    except requests.RequestException:
        return False


class Launched:
    """A process started by the bench, in a session of its own, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (warm shutdown) and wait; SIGKILL it and its children when ``kill`` or late.

        Children are found by pid while the process still runs, and killed by pid only
        while psutil confirms they are the same processes.
        """
        if not self.alive():
            return
        family = [psutil.Process(self.pid), *process_tree(self.pid)[1:]]
        if not kill:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        for member in family:
            with contextlib.suppress(psutil.Error):
                if member.is_running():
                    member.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


class SandboxAdmin:
    """The sandbox's ``/_sandbox/`` control endpoints."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._http = requests.Session()

    def configure(self, **fields) -> dict:
        response = self._http.post(f"{self.base_url}/_sandbox/config", json=fields, timeout=10)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        """Forget jobs, results, the log and QPS windows.

        A sandbox that never had a job answers ``/_sandbox/reset`` with a 500 (its jobs
        directory does not exist yet), so a fresh one is left as it is.
        """
        health = self._http.get(f"{self.base_url}/_sandbox/health", timeout=10).json()
        if health["jobs"] == 0 and health["requests"] == 0:
            return
        self._http.post(f"{self.base_url}/_sandbox/reset", timeout=60).raise_for_status()

    def requests_log(self, provider: str | None = None) -> list[dict]:
        params = {"provider": provider} if provider else {}
        response = self._http.get(f"{self.base_url}/_sandbox/requests", params=params,
                                  timeout=120)
        response.raise_for_status()
        return response.json()

    def jobs(self) -> list[dict]:
        """Every job the sandbox created (each a paid call): id, cost, created/completed at."""
        response = self._http.get(f"{self.base_url}/_sandbox/jobs", timeout=120)
        response.raise_for_status()
        return response.json()

    def sample_bytes(self, name: str = "portrait.jpg") -> bytes:
        response = self._http.get(self.sample_url(name), timeout=30)
        response.raise_for_status()
        return response.content

    def sample_url(self, name: str = "portrait.jpg") -> str:
        return f"{self.base_url}/_sandbox/samples/{name}"


class Stack:
    """Redis, S3 and the sandbox for a whole bench run; workers started per scenario."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self._exit = ExitStack()
        self.redis_url = ""
        self.s3_url = ""
        self.sandbox: SandboxAdmin | None = None
        self.workers: list[Launched] = []

    def __enter__(self) -> Stack:
        for key, value in AWS_ENV.items():  # boto3 in this process signs with these too
            os.environ.setdefault(key, value)
        try:
            self._start_services()
        except BaseException:
            self._exit.close()
            raise
        return self

    def _start_services(self) -> None:
        """Redis, S3 and the sandbox (a subclass starts its own variants)."""
        self.redis_url = self._exit.enter_context(embedded_redis())
        self.s3_url = self._start_moto()
        self.sandbox = SandboxAdmin(self._start_sandbox())

    def __exit__(self, *exc_info: object) -> None:
        self.stop_workers(kill=True)
        self._exit.close()

    def _launch(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Launched:
        log = self.work_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        proc = Launched(name, argv, {**os.environ, **(env or {})}, log)
        self._exit.callback(proc.stop)
        return proc

    def _start_moto(self) -> str:
        return self._start_server("moto", [sys.executable, "-m", "moto.server", "-H", LOOPBACK,
                                           "-p", "{port}"], "/moto-api/")

    def _start_sandbox(self) -> str:
        argv = [sys.executable, "-m", "workers.cli", "sandbox", "--host", LOOPBACK,
                "--port", "{port}", "--picwish-qps", "0", "--hitpaw-qps", "0"]
        return self._start_server("sandbox", argv, "/_sandbox/health", self.env())

    def _start_server(self, name: str, argv: list[str], health_path: str,
                      env: dict[str, str] | None = None) -> str:
        """Launch an HTTP server on a free port ("{port}" in ``argv``); wait for its health."""
        port = free_port()
        proc = self._launch(name, [a.replace("{port}", str(port)) for a in argv], env)
        url = f"http://{LOOPBACK}:{port}"
        wait_until(lambda: not proc.alive() or http_ok(url + health_path),
                   STARTUP_TIMEOUT_S, f"{name} start")
        if not proc.alive():
            raise RuntimeError(f"{name} exited: {proc.tail()}")
        return url

    # --- environment -------------------------------------------------------------------
    def env(self, **settings: object) -> dict[str, str]:
        """The deployment environment: where everything is, plus ``settings`` (upper-cased)."""
        env = {
            "REDIS_URL": self.redis_url, "CELERY_BROKER_URL": self.redis_url,
            "S3_ENDPOINT_URL": self.s3_url, "S3_BUCKET": BUCKET, **AWS_ENV,
            "HITPAW_API_KEY": DEFAULT_HITPAW_KEY, "PICWISH_API_KEY": DEFAULT_PICWISH_KEY,
            "LOG_LEVEL": "INFO", "WORKER_SOFT_SHUTDOWN_TIMEOUT_S": "0",
        }
        if self.sandbox is not None:
            env["HITPAW_BASE_URL"] = env["PICWISH_BASE_URL"] = self.sandbox.base_url
            env["URL_ALLOWLIST"] = "127.0.0.1"  # result and source URLs on loopback
        env.update({key.upper(): str(value) for key, value in settings.items()})
        return env

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=30)

    def flush(self) -> None:
        """Forget every job, message and counter (workers must be stopped)."""
        client = self.redis()
        try:
            client.flushall()
        finally:
            client.close()

    def reset_s3(self) -> None:
        """Drop every bucket and object moto holds (its memory with them)."""
        requests.post(f"{self.s3_url}/moto-api/reset", timeout=30).raise_for_status()

    # --- workers -----------------------------------------------------------------------
    def worker(self, env: dict[str, str], app, concurrency: int = 2,
               queues: tuple[str, ...] = ALL_QUEUES, include: tuple[str, ...] = ()) -> Launched:
        """Start ``enhance worker`` and wait until it answers a ping."""
        node = f"bench{len(self.workers)}-{uuid.uuid4().hex[:6]}@{LOOPBACK}"
        argv = [sys.executable, "-m", "workers.cli", "worker", "--concurrency",
                str(concurrency), "--hostname", node, "--queues", ",".join(queues)]
        for module in include:
            argv += ["--include", module]
        proc = self._launch("worker", argv, env)
        proc.node = node
        self.workers.append(proc)
        wait_until(lambda: not proc.alive() or app.control.ping(destination=[node], timeout=0.5),
                   STARTUP_TIMEOUT_S, f"worker {node} answering a ping", interval_s=0)
        if not proc.alive():
            raise RuntimeError(f"worker exited: {proc.tail()}")
        return proc

    def beat(self, env: dict[str, str]) -> Launched:
        """Start ``enhance beat`` (reconcile on its schedule); stopped with the workers."""
        schedule = self.work_dir / f"beat-schedule-{uuid.uuid4().hex[:6]}"
        proc = self._launch("beat", [sys.executable, "-m", "workers.cli", "beat",
                                     "--schedule", str(schedule)], env)
        self.workers.append(proc)
        return proc

    def stop_workers(self, kill: bool = False) -> None:
        for proc in self.workers:
            proc.stop(kill=kill)
        self.workers.clear()
