"""Private ``redis-server`` processes the fault suite can kill and restart.

``RedisProcess`` runs one ``redis-server`` on a fixed loopback port with its own data
directory, so a SIGKILL followed by ``start()`` brings the same server back on the same
address, from its append-only file when ``appendonly`` is on, or empty when it is off.
``Sentinels`` runs a primary, replicas and three ``redis-sentinel`` processes watching it.

Never point these at a shared Redis: everything here is started, killed and restarted by
the process that owns it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from workers.embedded import LOOPBACK, free_port

START_TIMEOUT_S = 20.0


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: apt-get install {name}")
    return path


class RedisProcess:
    """One private redis-server on a fixed port; ``kill()`` and ``start()`` at will.

    Args:
        appendonly: keep an AOF in the data directory (restarts come back with the data).
        appendfsync: ``everysec`` (Redis' default) or ``always``.
        replica_of: ``(host, port)`` of a primary to replicate.
        work_dir: where its data directory goes (a temporary one by default).
    """

    def __init__(self, appendonly: bool = True, appendfsync: str = "everysec",
                 replica_of: tuple[str, int] | None = None, work_dir: Path | None = None) -> None:
        self.port = free_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.replica_of = replica_of
        self.dir = Path(tempfile.mkdtemp(prefix=f"faults-redis-{self.port}-", dir=work_dir))
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def argv(self) -> list[str]:
        argv = [_binary("redis-server"), "--bind", LOOPBACK, "--port", str(self.port),
                "--dir", str(self.dir), "--save", "", "--daemonize", "no",
                "--loglevel", "warning", "--logfile", str(self.dir / "redis.log"),
                "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", self.appendfsync]
        if self.replica_of:
            argv += ["--replicaof", self.replica_of[0], str(self.replica_of[1])]
        return argv

    def start(self) -> RedisProcess:
        """Start (or restart) the server; return once it answers PING."""
        if self.alive():
            return self
        if not self.appendonly:  # an empty restart: nothing carried over
            self._forget_data()
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self._wait_ready()
        return self

    def _forget_data(self) -> None:
        for leftover in self.dir.iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            elif leftover.name != "redis.log":
                leftover.unlink()

    def _wait_ready(self) -> None:
        client = self.client(timeout_s=0.5)
        try:
            for _ in range(int(START_TIMEOUT_S / 0.05)):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server on {self.port} exited: {self.log_tail()}")
                with contextlib.suppress(redis.RedisError, OSError):
                    # LOADING answers an error until the AOF is read back: keep asking
                    if client.ping():
                        return
                time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError(f"redis-server on {self.port} did not answer: {self.log_tail()}")

    def client(self, timeout_s: float = 5.0) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=timeout_s,
                           socket_connect_timeout=timeout_s)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown save, no final fsync; what the AOF holds is what survives."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> None:
        self.kill()
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return (self.dir / "redis.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
