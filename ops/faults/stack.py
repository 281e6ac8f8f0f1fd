"""The system under fault: ``ops.bench``'s stack with Redis, S3 and processes one can break.

``FaultStack`` is ``ops.bench.stack.Stack`` (moto's S3 server and the sandbox as processes
of their own, ``enhance worker`` subprocesses) with these differences:

- its Redis (broker and job store) is a ``RedisProcess`` with an append-only file, killed
  with SIGKILL and restarted from that file at will (a scenario may point the broker at a
  ``RedisProcess`` of its own: ``CELERY_BROKER_URL`` in its settings);
- workers reach S3 through a ``BreakableProxy`` (500s, or no answer at all);
- ``beat()`` starts ``enhance beat``; ``kill(proc)`` SIGKILLs a process group (a worker
  with its pool) and records when, for the report.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import uuid
from pathlib import Path

from ops.bench.stack import STARTUP_TIMEOUT_S, Launched, SandboxAdmin, Stack, wait_until
from ops.faults.proxy import BreakableProxy
from ops.faults.redisproc import RedisProcess
from workers.app import app
from workers.constants import ALL_QUEUES
from workers.embedded import LOOPBACK

DEFAULT_CONCURRENCY = 4
#: Celery's start-up handshakes with the other workers (revoked ids, clocks, worker-online
#: gossip) cost 1.5-2.5 s a start and nothing here uses them: the suite starts ~20 workers.
QUICK_START = ("--without-mingle", "--without-gossip")


class FaultStack(Stack):
    """Redis (AOF), S3 behind a breakable proxy, the sandbox."""

    def __init__(self, work_dir: Path, appendfsync: str = "everysec") -> None:
        super().__init__(work_dir)
        self.store_redis = RedisProcess(appendonly=True, appendfsync=appendfsync,
                                        work_dir=work_dir)
        self.proxy: BreakableProxy | None = None
        self.kills: list[dict] = []  # every SIGKILL this stack sent: what and when
        self.beats: list[Launched] = []

    def _start_services(self) -> None:
        self.redis_url = self.store_redis.start().url
        self._exit.callback(self.store_redis.stop)
        moto_url = self._start_moto()
        self.proxy = BreakableProxy((LOOPBACK, int(moto_url.rsplit(":", 1)[1])))
        self._exit.callback(self.proxy.close)
        self.s3_url = self.proxy.url
        self.sandbox = SandboxAdmin(self._start_sandbox())

    def __exit__(self, *exc_info: object) -> None:
        self.stop_beats()
        super().__exit__(*exc_info)

    # --- processes -----------------------------------------------------------------------
    def worker(self, env: dict[str, str], concurrency: int = DEFAULT_CONCURRENCY,
               queues: tuple[str, ...] = ALL_QUEUES, wait: bool = True) -> Launched:
        """Start ``enhance worker`` and (``wait``) wait until it answers a ping.

        Each ping goes over a new broker connection: a pooled one may be to a Redis a
        scenario killed and restarted since.
        """
        node = f"faults{len(self.workers)}-{uuid.uuid4().hex[:6]}@{LOOPBACK}"
        proc = self._launch("worker", [sys.executable, "-m", "workers.cli", "worker",
                                       "--concurrency", str(concurrency), "--hostname", node,
                                       "--queues", ",".join(queues), *QUICK_START], env)
        proc.node = node
        self.workers.append(proc)
        if not wait:
            return proc
        wait_until(lambda: not proc.alive() or _pings(node), STARTUP_TIMEOUT_S,
                   f"worker {node} answering a ping", interval_s=0.2)
        if not proc.alive():
            raise RuntimeError(f"worker exited: {proc.tail()}")
        return proc

    def beat(self, env: dict[str, str]) -> Launched:
        proc = super().beat(env)
        self.workers.remove(proc)  # beats are killed and stopped on their own
        self.beats.append(proc)
        return proc

    def stop_workers(self, kill: bool = True) -> None:
        """Stop every worker; SIGKILL by default (everything is flushed after anyway)."""
        super().stop_workers(kill=kill)

    def stop_beats(self) -> None:
        for proc in self.beats:
            proc.stop(kill=True)
        self.beats.clear()

    def kill(self, proc: Launched, what: str) -> float:
        """SIGKILL ``proc``'s process group (a worker and its pool); return the time."""
        at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.proc.wait()
        self.kills.append({"what": what, "at": at})
        if proc in self.workers:
            self.workers.remove(proc)
        if proc in self.beats:
            self.beats.remove(proc)
        return at

    def logs(self, name: str) -> str:
        return "\n".join(p.read_text(errors="replace")
                         for p in sorted(self.work_dir.glob(f"{name}-*.log")))


def _pings(node: str) -> bool:
    try:
        with app.connection_for_write() as conn:
            return bool(app.control.ping(destination=[node], timeout=0.5, connection=conn))
    except Exception:  # noqa: BLE001 - a broker still coming back: not yet
        return False
