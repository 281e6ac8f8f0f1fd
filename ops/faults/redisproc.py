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


class Sentinels:
    """A primary, one replica and three ``redis-sentinel`` processes watching the primary.

    ``down_after_ms`` is how long the primary may be silent before the Sentinels agree it
    is down and promote the replica.
    """

    MASTER = "mymaster"

    def __init__(self, work_dir: Path | None = None, down_after_ms: int = 1000) -> None:
        self.primary = RedisProcess(appendonly=True, work_dir=work_dir)
        self.replica: RedisProcess | None = None
        self.work_dir = work_dir
        self.down_after_ms = down_after_ms
        self.ports = [free_port() for _ in range(3)]
        self.procs: list[subprocess.Popen] = []

    @property
    def addresses(self) -> str:
        """``REDIS_SENTINELS``: host:port,host:port,host:port."""
        return ",".join(f"{LOOPBACK}:{port}" for port in self.ports)

    @property
    def broker_url(self) -> str:
        """``CELERY_BROKER_URL`` for kombu's Sentinel transport."""
        return ";".join(f"sentinel://{LOOPBACK}:{port}/0" for port in self.ports)

    def start(self) -> Sentinels:
        self.primary.start()
        self.replica = RedisProcess(appendonly=True, replica_of=(LOOPBACK, self.primary.port),
                                    work_dir=self.work_dir).start()
        for port in self.ports:
            conf = self.primary.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind {LOOPBACK}\ndaemonize no\ndir {self.primary.dir}\n"
                f"logfile {self.primary.dir / f'sentinel-{port}.log'}\n"
                f"sentinel monitor {self.MASTER} {LOOPBACK} {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {self.MASTER} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.MASTER} 10000\n"
                f"sentinel parallel-syncs {self.MASTER} 1\n")
            self.procs.append(subprocess.Popen([_binary("redis-sentinel"), str(conf)],
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL,
                                               start_new_session=True))
        self._wait(lambda: self.master_port() == self.primary.port, "Sentinels agreeing")
        self._wait(self._replica_linked, "the replica's first sync")
        return self

    def master_port(self) -> int | None:
        """The port the first Sentinel that answers names as primary."""
        for port in self.ports:
            client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=1)
            try:
                host_port = client.execute_command("SENTINEL", "get-master-addr-by-name",
                                                   self.MASTER)
                if host_port:
                    return int(host_port[1])
            except (redis.RedisError, OSError):
                continue
            finally:
                client.close()
        return None

    def _replica_linked(self) -> bool:
        client = self.replica.client(timeout_s=1)
        try:
            return client.info("replication").get("master_link_status") == "up"
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def wait_promoted(self, timeout_s: float = 60.0) -> float:
        """Wait until the Sentinels name the replica primary; return when (time.time())."""
        self._wait(lambda: self.master_port() == self.replica.port, "the replica's promotion",
                   timeout_s)
        return time.time()

    @staticmethod
    def _wait(check, what: str, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{what} did not happen within {timeout_s:.0f} s")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if self.replica:
            self.replica.stop()
        self.primary.stop()

    def __enter__(self) -> Sentinels:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
