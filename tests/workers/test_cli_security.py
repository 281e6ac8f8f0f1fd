"""Flower and the metrics server are closed by default."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from workers.cli import flower_auth_configured, is_loopback, main

ROOT = Path(__file__).resolve().parents[2]
FLOWER_ENV = ("FLOWER_BASIC_AUTH", "FLOWER_AUTH_PROVIDER", "FLOWER_AUTH",
              "FLOWER_UNAUTHENTICATED_API")


@pytest.fixture(autouse=True)
def no_flower_auth(monkeypatch):
    for name in FLOWER_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False),
    ("10.0.0.5", False), ("flower.example", False),
])
def test_is_loopback(address, loopback):
    assert is_loopback(address) is loopback


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "10.1.2.3"])
def test_flower_refuses_an_open_bind_without_auth_and_says_what_to_set(address):
    result = CliRunner().invoke(main, ["flower", "--address", address, "--port", "1"])
    assert result.exit_code != 0
    assert f"refusing to serve Flower on {address} without authentication" in result.output
    assert "FLOWER_BASIC_AUTH=user:password" in result.output
    assert "--address 127.0.0.1" in result.output


def test_flower_refuses_an_unauthenticated_api_on_an_open_bind(monkeypatch):
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "admin:secret")
    monkeypatch.setenv("FLOWER_UNAUTHENTICATED_API", "true")
    result = CliRunner().invoke(main, ["flower", "--address", "0.0.0.0", "--port", "1"])
    assert result.exit_code != 0
    assert "unset FLOWER_UNAUTHENTICATED_API" in result.output


def test_flower_auth_is_basic_auth_or_oauth(monkeypatch):
    assert not flower_auth_configured()
    assert flower_auth_configured(("--basic-auth=a:b",))
    monkeypatch.setenv("FLOWER_AUTH_PROVIDER", "flower.views.auth.GithubLoginHandler")
    assert not flower_auth_configured()  # a provider with nobody allowed is not a login
    monkeypatch.setenv("FLOWER_AUTH", ".*@example.com")
    assert flower_auth_configured()
    monkeypatch.delenv("FLOWER_AUTH_PROVIDER")
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "admin:secret")
    assert flower_auth_configured()


def test_flower_defaults_to_loopback():
    option = next(p for p in main.commands["flower"].params if p.name == "address")
    assert option.default == "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_addresses(pid: int, port: int, timeout_s: float = 30) -> set[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port}")


@pytest.mark.integration
@pytest.mark.parametrize(("args", "env", "expected"), [
    ([], {}, {"127.0.0.1"}),
    (["--address", "127.0.0.2"], {}, {"127.0.0.2"}),
    ([], {"METRICS_BIND": "127.0.0.3"}, {"127.0.0.3"}),
])
def test_metrics_binds_loopback_unless_told(args, env, expected):
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if k not in ("METRICS_BIND", "METRICS_PORT")}
    proc = subprocess.Popen([sys.executable, "-m", "workers.cli", "metrics", "--port", str(port),
                             *args], cwd=ROOT, env={**clean, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert listening_addresses(proc.pid, port) == expected
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
