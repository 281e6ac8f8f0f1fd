"""Embedded stand-ins for the services a deployment provides: Redis, S3, the providers.

Used by ``enhance demo`` and ``enhance dev`` (a whole stack on this machine) and by the
test suite when nothing is configured. Each is a real server on loopback: a
``redis-server`` process, moto's S3 server over HTTP and the provider sandbox. Nothing
here is used when the services are configured.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

LOOPBACK = "127.0.0.1"
STARTUP_BACKOFF_CAP_S = 0.2  # longest pause between two connection attempts at start-up


def dies_with_parent(argv: list[str]) -> list[str]:
    """``argv`` so that its process gets SIGTERM when this one dies, however it dies
    (SIGKILL too): Linux's parent-death signal, set by util-linux's ``setpriv`` before it
    executes ``argv`` in its own place. ``argv`` itself where there is no ``setpriv``.

    The signal comes when the *thread* that started the child ends: start it from one
    that lives as long as the child should (the main thread).
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


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
        dies_with_parent([binary, "--bind", LOOPBACK, "--port", str(port), "--save", "",
                          "--appendonly", "no", "--dir", workdir, "--daemonize", "no",
                          "--loglevel", "warning"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C meant for its owner must not stop it before the
    )                            # workers using it; the owner stops it last
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


@dataclass
class LocalServices:
    """What ``start_missing_services`` started: the environment pointing at it, in words."""

    env: dict[str, str] = field(default_factory=dict)
    started: list[tuple[str, str, str]] = field(default_factory=list)  # (name, address, what)
    sandbox_url: str | None = None


def start_missing_services(stack: ExitStack, environ: Mapping[str, str] = os.environ,
                           processing_time_s: tuple[float, float] = (1.0, 4.0)) -> LocalServices:
    """Start on loopback what ``environ`` does not configure; stopped when ``stack`` closes.

    A private Redis without ``REDIS_URL``, moto's S3 server without ``S3_ENDPOINT_URL``
    or AWS credentials, and the provider sandbox for each provider without an API key.
    """
    local = LocalServices()
    if not environ.get("REDIS_URL"):
        url = stack.enter_context(embedded_redis())
        local.env["REDIS_URL"] = url
        local.env["CELERY_BROKER_URL"] = environ.get("CELERY_BROKER_URL") or url
        local.started.append(("redis", url, "redis-server: broker and job store"))
    if not environ.get("S3_ENDPOINT_URL") and not environ.get("AWS_ACCESS_KEY_ID"):
        endpoint = stack.enter_context(embedded_s3())
        local.env.update(S3_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
                         AWS_SECRET_ACCESS_KEY="testing")
        local.started.append(("s3", endpoint, "moto's S3 server, in memory"))
    missing = [p for p in ("hitpaw", "picwish") if not environ.get(f"{p.upper()}_API_KEY")]
    if missing:
        _start_sandbox(stack, local, missing, processing_time_s)
        if not environ.get("URL_ALLOWLIST"):  # the sandbox's result URLs are on loopback
            local.env["URL_ALLOWLIST"] = urlsplit(local.sandbox_url).hostname or LOOPBACK
    return local


def _start_sandbox(stack: ExitStack, local: LocalServices, providers: list[str],
                   processing_time_s: tuple[float, float]) -> None:
    from providers.sandbox import SandboxConfig, SandboxServer

    config = SandboxConfig(processing_time_s=processing_time_s)
    sandbox = stack.enter_context(SandboxServer(config, quiet=True))
    local.sandbox_url = sandbox.base_url
    keys = {"hitpaw": sandbox.hitpaw_key, "picwish": sandbox.picwish_key}
    for name in providers:
        local.env[f"{name.upper()}_API_KEY"] = keys[name]
        local.env[f"{name.upper()}_BASE_URL"] = sandbox.base_url
    local.started.append(("sandbox", sandbox.base_url,
                          f"provider sandbox for {' and '.join(providers)} (fake keys, no charge)"))


def ensure_bucket(objects) -> bool:
    """Create the bucket of ``objects`` (an ``ObjectStore``) unless it exists; True if created."""
    client, bucket = objects.client, objects.bucket
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except Exception:  # noqa: BLE001 - botocore's 404 has no class of its own
        client.create_bucket(Bucket=bucket)
        return True
