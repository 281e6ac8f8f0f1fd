"""Embedded stand-ins for the services a deployment provides: Redis and an S3 endpoint.

Used by ``enhance demo`` (the main job on embedded defaults) and by the test suite when
nothing is configured. Each is a real server on loopback: a ``redis-server`` process and
moto's S3 server over HTTP. Nothing here is used when the services are configured.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

LOOPBACK = "127.0.0.1"
STARTUP_BACKOFF_CAP_S = 0.2  # longest pause between two connection attempts at start-up


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def redis_answers(url: str, timeout_s: float = 1.0) -> bool:
    """True when a Redis server answers PING at ``url``."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


@contextmanager
def embedded_redis(startup_timeout_s: float = 10.0) -> Iterator[str]:
    """Run a private ``redis-server`` on a free loopback port; yield its URL.

    It keeps nothing on disk and is killed on exit. Raises ``RuntimeError`` when no
    ``redis-server`` binary is installed (``apt-get install redis-server``).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: apt-get install redis-server")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="enhance-redis-")
    proc = subprocess.Popen(
        [binary, "--bind", LOOPBACK, "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", workdir, "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://{LOOPBACK}:{port}/0"
    try:
        _wait_until_ready(url, proc, startup_timeout_s)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_until_ready(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    """Connect with redis-py's own backoff until the new server answers PING."""
    attempts = max(int(timeout_s / STARTUP_BACKOFF_CAP_S), 1)
    retry = Retry(ExponentialBackoff(cap=STARTUP_BACKOFF_CAP_S, base=0.01), attempts)
    client = redis.Redis.from_url(url, retry=retry, retry_on_error=[redis.ConnectionError])
    try:
        client.ping()
    except redis.ConnectionError as exc:
        state = f"exited with {proc.returncode}" if proc.poll() is not None else "no answer"
        raise RuntimeError(f"redis-server did not start at {url}: {state}") from exc
    finally:
        client.close()


@contextmanager
def embedded_s3() -> Iterator[str]:
    """Run moto's S3 server over HTTP on a free loopback port; yield its endpoint URL.

    Sets dummy AWS credentials in this process's environment where none are set, since
    boto3 refuses to sign without some.
    """
    from moto.server import ThreadedMotoServer  # the `local` extra: not needed in production

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
