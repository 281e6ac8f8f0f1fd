"""``enhance submit --wait`` and ``enhance dev`` in a terminal, as a person runs them."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.system import ROOT, image_bytes
from tests.workers.terminal import Terminal

pytestmark = pytest.mark.integration

LABEL = re.compile(r"\] ([a-z]+(?: \d+ %)?) \(")  # "[########------------] processing 40 % (3 s)"


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(image_bytes(60, 40))
    return path


def labels(output: str) -> list[str]:
    """The status line's successive labels, each once."""
    seen: list[str] = []
    for label in LABEL.findall(output):
        if not seen or seen[-1] != label:
            seen.append(label)
    return seen


def test_the_status_line_shows_each_state_and_the_providers_progress(system, sandbox, photo):
    sandbox.configure(processing_time_s=(600.0, 600.0))  # held until released below
    system.start_worker()
    term = Terminal(["submit", str(photo), "--provider", "picwish", "--wait"], system.env)
    try:
        term.expect(r"processing \d+ %", timeout_s=60)
        sandbox.release(within_s=0.5)
        assert term.wait(timeout_s=60) == 0, term.output
    finally:
        term.close()

    seen = labels(term.output)
    assert seen[0] == "queued" and seen[-1] == "succeeded", seen
    assert "storing" in seen or "succeeded" in seen
    assert any(label.startswith("processing ") for label in seen), seen
    order = ["queued", "submitted", "processing", "storing", "succeeded"]
    ranks = [order.index(label.split()[0]) for label in seen]
    assert ranks == sorted(ranks), seen
    assert "\r" in term.output, "the line is redrawn in place on a terminal"
    assert " INFO " not in term.output, "a log line broke the status line"


def test_no_worker_is_named_with_how_to_start_one_and_ctrl_c_leaves_the_job_running(
        system, sandbox, photo):
    term = Terminal(["submit", str(photo), "--provider", "hitpaw", "--wait"], system.env)
    try:
        term.expect("no worker is running: nothing consumes enhance.admit, enhance.submit "
                    r"\(no worker answered Celery's inspect\)\. Start one in another terminal: "
                    "enhance worker", timeout_s=60)
        term.interrupt()
        status = term.wait(timeout_s=30)
    finally:
        term.close()

    job_id = re.search(r"job ([0-9a-f]{32})", term.output).group(1)
    assert status == 130
    assert (f"stopped waiting; job {job_id} carries on (now queued). Follow it with: "
            f"enhance status {job_id}") in term.output
    assert "Aborted!" not in term.output and "Traceback" not in term.output
    assert system.job(job_id).state.value == "queued"


def test_a_worker_without_the_jobs_queue_is_named(system, sandbox, photo):
    system.start_worker(queues="enhance.store")
    term = Terminal(["submit", str(photo), "--provider", "hitpaw", "--wait", "--json"],
                    system.env)
    try:
        term.expect(r"no worker consumes enhance\.admit, enhance\.submit \(workers up: w\w+@test\)"
                    r"\. Start one: enhance worker --queues enhance\.admit,enhance\.submit",
                    timeout_s=60)
    finally:
        term.close()


@pytest.mark.slow
def test_enhance_dev_up_submit_status_get_and_down(tmp_path, photo):
    """A fresh directory, nothing configured: `enhance dev` in one terminal, commands in another."""
    env = unconfigured_env()
    dev = Terminal(["dev"], {**env, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    try:
        dev.expect("enhance dev: ready", timeout_s=120)
        assert (tmp_path / ".enhance" / "dev.env").is_file()

        done = _enhance(tmp_path, env, "submit", str(photo), "--provider", "picwish", "--wait",
                        "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "enhance: using the settings of `enhance dev` from .enhance/dev.env" in done.stderr
        job = json.loads(done.stdout)
        assert job["state"] == "succeeded" and job["output_uri"].startswith("s3://enhance-results/")

        status = _enhance(tmp_path, env, "status", job["job_id"])
        assert status.returncode == 0 and f"job {job['job_id']}: succeeded" in status.stdout
        got = _enhance(tmp_path, env, "get", job["job_id"], "-o", "out.jpg")
        assert got.returncode == 0, got.stderr
        assert (tmp_path / "out.jpg").read_bytes()[:2] == b"\xff\xd8"  # a JPEG

        dev.interrupt()
        assert dev.wait(timeout_s=60) == 0, dev.output
    finally:
        dev.close()
    assert "enhance dev: stopped" in dev.output and "exited with status" not in dev.output
    assert not (tmp_path / ".enhance" / "dev.env").exists()
    for line in ("redis ", "s3 ", "sandbox ", "worker ", "beat "):
        assert f"\n  {line}" in dev.output.replace("\r\n", "\n"), line


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux's setpriv")
def test_enhance_dev_killed_outright_takes_its_processes_with_it(tmp_path):
    """SIGKILL gives `enhance dev` no chance to stop anything: its worker, beat, metrics
    and redis-server get SIGTERM from the kernel (the parent-death signal) and end."""
    env = unconfigured_env()
    dev = Terminal(["dev"], {**env, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    try:
        dev.expect("enhance dev: ready", timeout_s=120)
        children = _children(dev.proc.pid)
        commands = " ".join(_command(pid) for pid in children)
        for name in ("redis-server", "worker", "beat", "metrics"):
            assert name in commands, commands
        os.kill(dev.proc.pid, signal.SIGKILL)
        dev.proc.wait(timeout=10)
        deadline = time.monotonic() + 90  # the worker's warm shutdown, on a busy machine
        while any(_running(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = [_command(pid) for pid in children if _running(pid)]
        assert not left, left
    finally:
        dev.close()


def _children(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux's /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _running(pid: int) -> bool:
    """Alive and not a zombie (a child of a dead parent is reaped by init)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def unconfigured_env() -> dict[str, str]:
    """This environment without any service setting: `enhance dev` starts its own."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("REDIS_", "CELERY_", "S3_", "AWS_", "HITPAW_", "PICWISH_"))}


def _enhance(cwd, env, *args):
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], cwd=cwd,
                          env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120)
