"""``enhance dev``: a whole local stack that stays up until Ctrl-C.

What the environment does not configure is started on loopback (a private Redis, moto's
S3 server with its bucket, the provider sandbox for each provider without an API key),
then ``enhance worker``, ``enhance beat`` and ``enhance metrics`` run as processes of
their own. The settings pointing at all of it go to ``.enhance/dev.env``
(``workers/devenv.py``), which the other ``enhance`` commands read when nothing is
configured: ``enhance submit photo.jpg --provider picwish --wait`` in another terminal
just works. Ctrl-C (or SIGTERM, or closing the terminal) stops everything it started,
the workers first, and removes the file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import click

from workers.cli_errors import CliFailure
from workers.devenv import (
    DEV_DIR,
    DEV_ENV,
    PID_VARIABLE,
    is_alive,
    read_env_file,
    write_dev_env,
)
from workers.embedded import (
    LocalServices,
    dies_with_parent,
    ensure_bucket,
    free_port,
    start_missing_services,
)

STOP_TIMEOUT_S = 20.0  # a process given SIGTERM is killed after this long
READY_TIMEOUT_S = 60.0  # the worker must answer a ping within this long
#: Settings written to dev.env besides what the stack started: never a real secret.
PLACE_SETTINGS = ("CELERY_BROKER_URL", "S3_ENDPOINT_URL", "S3_BUCKET", "S3_REGION",
                  "URL_ALLOWLIST")


class Stop(Exception):
    """SIGTERM or SIGHUP asked ``enhance dev`` to stop."""


def run_dev(folder: Path, concurrency: int = 2, verbose: bool = False) -> int:
    """Run the stack until interrupted; return the exit status (0 after Ctrl-C).

    The worker, beat and metrics log warnings only (failed jobs among them); ``verbose``
    shows their INFO lines too (every task, every transition).
    """
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_stop)
    if not verbose:
        os.environ["LOG_LEVEL"] = "WARNING"
    with ExitStack() as stack:
        stack.callback(click.echo, "enhance dev: stopped", err=True)  # runs last
        try:
            return _run(stack, folder, concurrency)
        except (KeyboardInterrupt, Stop):
            click.echo("\nenhance dev: stopping worker, beat and metrics, then the services",
                       err=True)
            return 0


def _raise_stop(signum, _frame) -> None:
    raise Stop(signal.Signals(signum).name)


def _run(stack: ExitStack, folder: Path, concurrency: int) -> int:
    _refuse_a_second_stack(folder)
    try:
        local = start_missing_services(stack)
    except RuntimeError as exc:  # no redis-server binary, or it would not start
        raise CliFailure(f"enhance dev: {exc}") from exc
    os.environ.update(local.env)
    os.environ.setdefault("RECONCILE_INTERVAL_S", "5")
    from workers.runtime import get_runtime
    from workers.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    created = ensure_bucket(get_runtime().objects)
    metrics_port = free_port()
    (folder / DEV_DIR).mkdir(exist_ok=True)  # beat keeps its schedule there
    procs = {
        "worker": _spawn("worker", "--concurrency", str(concurrency)),
        "beat": _spawn("beat", "--schedule", str(folder / DEV_DIR / "beat-schedule")),
        "metrics": _spawn("metrics", "--port", str(metrics_port)),
    }
    stack.callback(_stop_all, list(procs.values()))
    _wait_until_ready(procs["worker"])
    path = write_dev_env(folder, _dev_env(local))
    stack.callback(path.unlink, missing_ok=True)
    _print_summary(local, settings, created, procs, metrics_port, path)
    click.echo("enhance dev: ready. Ctrl-C stops everything.", err=True)
    return _watch(procs)


def _refuse_a_second_stack(folder: Path) -> None:
    """One stack per directory: a second would take over the first one's dev.env."""
    path = folder / DEV_DIR / DEV_ENV
    pid = read_env_file(path).get(PID_VARIABLE, "") if path.is_file() else ""
    if pid.isdigit() and is_alive(int(pid)):
        raise CliFailure(f"enhance dev already runs here (pid {pid}, {DEV_DIR}/{DEV_ENV}): "
                         "use that one, or stop it first")


def _dev_env(local: LocalServices) -> dict[str, str]:
    """What the other commands need: where things live, and the sandbox's fake keys."""
    values = {name: os.environ[name] for name in PLACE_SETTINGS if os.environ.get(name)}
    values.update(local.env)  # fake keys and credentials only: real ones are not written
    return values


def _spawn(*args: str) -> subprocess.Popen:
    """``enhance ARGS`` in a session of its own: only this process stops it, in order, and
    if this process is killed outright it gets SIGTERM (``dies_with_parent``).

    Its stdout (Celery's start-up banners) is dropped; its log lines (stderr) show.
    """
    return subprocess.Popen(dies_with_parent([sys.executable, "-m", "workers.cli", *args]),
                            stdout=subprocess.DEVNULL, start_new_session=True)


def _stop_all(procs: list[subprocess.Popen]) -> None:
    """SIGTERM to each at once; whatever still runs ``STOP_TIMEOUT_S`` later is killed."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker's pool processes too
            proc.wait()


def _print_summary(local: LocalServices, settings, created: bool, procs: dict,
                   metrics_port: int, path: Path) -> None:
    echo = click.echo
    echo("enhance dev: a local stack on this machine")
    for name, address, what in local.started:
        echo(f"  {name:<8} {address:<32} {what}")
    bucket = f"s3://{settings.s3_bucket}" + (" (created)" if created else "")
    echo(f"  {'bucket':<8} {bucket}")
    real = [n for n in ("hitpaw", "picwish") if f"{n.upper()}_API_KEY" not in local.env]
    for name in real:
        echo(f"  {name:<8} {getattr(settings, f'{name}_base_url'):<32} the real provider: "
             "your API key, real charges")
    echo(f"  {'worker':<8} pid {procs['worker'].pid:<28} every queue")
    echo(f"  {'beat':<8} pid {procs['beat'].pid:<28} reconcile every "
         f"{os.environ['RECONCILE_INTERVAL_S']} s")
    echo(f"  {'metrics':<8} http://127.0.0.1:{metrics_port}/metrics    pid {procs['metrics'].pid}")
    shown = os.path.relpath(path)
    echo(f"settings: {shown} (read by every enhance command run here with nothing exported)")
    echo("in another terminal:")
    echo("  enhance submit photo.jpg --provider picwish --wait")
    echo("  enhance get JOB_ID -o out.jpg      enhance status JOB_ID      enhance stats")
    if real and any(name == "s3" for name, _, _ in local.started):
        echo("note: a real provider fetches inputs by presigned URL and cannot reach an S3 "
             "server on loopback: set S3_ENDPOINT_URL (and AWS credentials) to a bucket it "
             "can reach", err=True)


def _wait_until_ready(worker: subprocess.Popen) -> None:
    from workers.app import app

    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise click.ClickException(f"the worker exited with status {worker.returncode}")
        if app.control.ping(timeout=1.0):
            return
    raise click.ClickException(f"the worker did not answer a ping within {READY_TIMEOUT_S:g} s")


def _watch(procs: dict[str, subprocess.Popen]) -> int:
    """Sleep until a process exits (it should not): say which, and stop the rest."""
    while True:
        for name, proc in procs.items():
            if proc.poll() is not None:
                click.echo(f"enhance dev: {name} (pid {proc.pid}) exited with status "
                           f"{proc.returncode}; stopping the stack", err=True)
                return 1
        time.sleep(0.5)
