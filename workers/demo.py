"""The main job on embedded defaults: the whole system on this machine, end to end.

What is not configured is started here: a private Redis (no ``REDIS_URL``), moto's S3
server on loopback (no ``S3_ENDPOINT_URL``), and the provider sandbox for each provider
with no API key. Then a real Celery worker and beat run as processes, sample images go
through both providers, and the results are printed with where they landed, their
timings and their cost.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import click

from workers.embedded import dies_with_parent, ensure_bucket, start_missing_services

SAMPLES = {  # name -> (width, height, Pillow format)
    "portrait.jpg": (256, 256, "JPEG"),
    "product.png": (320, 240, "PNG"),
}


@dataclass
class DemoJob:
    label: str
    source: object
    provider: str
    model: str
    options: dict


def sample_image(width: int, height: int, image_format: str) -> bytes:
    """A small synthetic photo-like image (gradient and shapes), made with Pillow."""
    from PIL import Image, ImageDraw

    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=(200, 120, 80))
    draw.rectangle((10, 10, width // 3, height // 5), fill=(40, 90, 200))
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


def demo_jobs(sandbox_url: str | None) -> list[DemoJob]:
    portrait = sample_image(*SAMPLES["portrait.jpg"])
    product = sample_image(*SAMPLES["product.png"])
    jobs = [
        DemoJob("portrait.jpg", portrait, "hitpaw", "face_2x", {}),
        DemoJob("product.png", product, "hitpaw", "general_4x", {"dpi": 300}),
        DemoJob("product.png", product, "picwish", "ultra_hd", {}),
        DemoJob("portrait.jpg (base64 result)", portrait, "picwish", "hd", {"return_type": 2}),
    ]
    if sandbox_url:
        url = f"{sandbox_url}/_sandbox/samples/portrait.jpg"
        jobs.append(DemoJob("URL source", url, "hitpaw", "general_2x", {}))
    return jobs


def _spawn(stack: ExitStack, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(dies_with_parent([sys.executable, "-m", "workers.cli", *args]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop() -> None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    stack.callback(stop)
    return proc


def _wait_for_worker(app, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if app.control.ping(timeout=1.0):
            return
    raise click.ClickException("the worker did not come up")


def run_demo(timeout_s: float, report: Path | None = None) -> int:
    """Run the main job; return the exit status (0 when every job succeeded).

    ``report``: where the HTML report goes (each input beside its result); None for none.
    """
    with ExitStack() as stack:
        local = start_missing_services(stack)
        os.environ.update(local.env)
        os.environ.setdefault("RECONCILE_INTERVAL_S", "5")
        from workers.settings import get_settings

        get_settings.cache_clear()
        from workers.app import app  # configured from the environment set above
        from workers.runtime import get_runtime

        rt = get_runtime()
        ensure_bucket(rt.objects)
        click.echo(f"broker {rt.settings.celery_broker_url}, bucket {rt.settings.s3_bucket}")
        _spawn(stack, "worker", "--concurrency", "2", "--loglevel", "WARNING")
        _spawn(stack, "beat")
        _wait_for_worker(app)
        jobs = demo_jobs(local.sandbox_url)
        records = _run_jobs(rt, jobs, timeout_s)
        if report is not None:  # before the stack goes: the results live in its S3
            click.echo(f"report: {_write_report(rt, report, jobs, records)}")
        return 0 if all(r.state.value == "succeeded" for r in records) else 1


def _run_jobs(rt, jobs: list[DemoJob], timeout_s: float) -> list:
    """Enqueue ``jobs``, wait until each ends (or ``timeout_s``), print the table; the records."""
    from tasks.producer import enqueue

    logging.getLogger("enhance").setLevel(logging.WARNING)  # the table says it all
    started = time.monotonic()
    ids = [enqueue(j.source, j.provider, j.model, j.options, filename=j.label.split()[0],
                   runtime=rt) for j in jobs]
    click.echo(f"enqueued {len(ids)} jobs in {time.monotonic() - started:.3f} s")
    for records in rt.jobs.watch(ids, timeout_s):
        if all(r.state.final for r in records):
            break
    _print_table(jobs, records)
    return records


def _write_report(rt, path: Path, jobs: list[DemoJob], records) -> Path:
    from workers.demo_report import ReportRow, write_report

    rows = [ReportRow(job.label, rec, _input_bytes(job), _result_bytes(rt, rec))
            for job, rec in zip(jobs, records, strict=True)]
    return write_report(path, rows).resolve()


def _input_bytes(job: DemoJob) -> bytes | None:
    if isinstance(job.source, bytes):
        return job.source
    import requests  # the sandbox's sample, on loopback: the demo's own URL

    try:
        return requests.get(job.source, timeout=10).content
    except requests.RequestException:
        return None


def _result_bytes(rt, rec) -> bytes | None:
    if not rec.output:
        return None
    with rt.objects.open_stream(rec.output.uri) as stream:
        return stream.read()


def _print_table(jobs: list[DemoJob], records) -> None:
    click.echo(f"\n{'source':<30} {'provider':<8} {'model':<11} {'state':<10} {'secs':>6} "
               f"{'cost':>5}  result")
    for job, rec in zip(jobs, records, strict=True):
        if rec.output:
            where = f"{rec.output.uri} ({rec.output.width}x{rec.output.height})"
        else:
            where = f"{rec.error.code}: {rec.error.message}" if rec.error else rec.state.value
        click.echo(f"{job.label:<30} {rec.provider:<8} {rec.model:<11} {rec.state.value:<10} "
                   f"{rec.duration_s():>6.1f} {rec.cost or 0:>5g}  {where}")
    ok = sum(r.state.value == "succeeded" for r in records)
    for provider in sorted({r.provider for r in records}):
        spent = sum(r.cost or 0 for r in records if r.provider == provider)
        unit = "coins" if provider == "hitpaw" else "credits"
        click.echo(f"{provider}: {spent:g} {unit} charged")
    click.echo(f"{ok} of {len(records)} jobs succeeded")
