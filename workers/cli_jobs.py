"""``enhance`` commands over the producer API: results, URLs, listings, cancelling.

    enhance get JOB_ID [-o FILE]                 download the stored result
    enhance url JOB_ID [--expires 3600] [--download]
    enhance jobs [--state S] [--provider P] [--tenant T] [--label K=V]... [--since 2h|ISO]
                 [--limit 50] [--cursor C] [--json]
    enhance cancel JOB_ID [--json]

Registered on the ``enhance`` group by ``workers.cli`` (``register``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from providers.errors import EnhanceError
from storage.jobs import JobState

EXIT_NOT_DONE = 1  # get/url: the job has no result; cancel: the job was not cancelled
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _fail(exc: EnhanceError) -> click.ClickException:
    """The group's wording (workers/cli_errors.py): S3 down is exit 4, with its URL."""
    from workers.cli_errors import failure_for
    from workers.settings import get_settings

    return failure_for(exc, get_settings())


@click.command()
@click.argument("job_id")
@click.option("-o", "--output", "output", default=None,
              help="File to write (default: the download name in the current directory; "
                   "- for stdout). Written whole or not at all: a failed download leaves no "
                   "partial file and an existing FILE untouched.")
def get(job_id: str, output: str | None) -> None:
    """Download JOB_ID's stored result."""
    from tasks.producer import download_name, get_job, stored_output
    from workers.runtime import get_runtime

    try:
        record = get_job(job_id)
        stream = get_runtime().objects.open_stream(stored_output(record).uri)
    except EnhanceError as exc:
        raise _fail(exc) from exc
    name = output or download_name(record)
    try:
        with stream:
            if name == "-":
                shutil.copyfileobj(stream, sys.stdout.buffer)
                return
            save_whole(stream, Path(name))
    except EnhanceError as exc:
        raise _fail(exc) from exc
    except OSError as exc:  # a missing folder, no permission, a full disk
        raise click.ClickException(f"cannot write {name}: {exc.strerror or exc}") from exc
    click.echo(f"{name}: {Path(name).stat().st_size} bytes ({record.output.content_type})",
               err=True)


def save_whole(stream, path: Path) -> None:
    """Write ``stream`` to ``path`` whole or not at all: a ``.part`` file beside it, renamed
    over ``path`` once the last byte is written, removed if reading fails mid-way (an
    earlier ``path`` is then left as it was)."""
    part = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies, as open()
    try:
        with os.fdopen(fd, "wb") as file:
            shutil.copyfileobj(stream, file)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


@click.command()
@click.argument("job_id")
@click.option("--expires", "expires_s", type=int, default=3600, show_default=True,
              help="Seconds the URL lives (at most 7 days).")
@click.option("--download", is_flag=True, help="Content-Disposition: attachment.")
def url(job_id: str, expires_s: int, download: bool) -> None:
    """Print a presigned HTTPS URL of JOB_ID's stored result."""
    from tasks.producer import output_url

    try:
        click.echo(output_url(job_id, expires_s, download=download))
    except EnhanceError as exc:
        raise _fail(exc) from exc


def parse_since(text: str | None) -> datetime | None:
    """``30m``, ``2h``, ``7d`` ago, or an ISO 8601 time (UTC unless it says otherwise)."""
    if text is None:
        return None
    match = _DURATION.match(text)
    if match:
        ago = timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
        return datetime.now(UTC) - ago
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither 30m/2h/7d nor an ISO time",
                                 param_hint="--since") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_labels(pairs: tuple[str, ...]) -> dict[str, str]:
    """``("user=42", "order=A17")`` -> a dict; a key given twice is an error, not the last
    value silently winning (a job has one value per key, so both could never match)."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals:
            raise click.BadParameter("use KEY=VALUE", param_hint="--label")
        if key in labels:
            raise click.BadParameter(f"label {key} given twice", param_hint="--label")
        labels[key] = value
    return labels


@click.command()
@click.option("--state", type=click.Choice([s.value for s in JobState]), default=None)
@click.option("--provider", type=click.Choice(["hitpaw", "picwish"]), default=None)
@click.option("--tenant", default=None)
@click.option("--label", "labels", multiple=True, help="KEY=VALUE (repeatable: all must match; each KEY once).")
@click.option("--since", default=None, help="30m, 2h, 7d, or an ISO time.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--cursor", default=None, help="The next_cursor of the previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def jobs(state, provider, tenant, labels, since, limit, cursor, as_json) -> None:
    """List jobs, newest first, a page at a time."""
    from tasks.producer import list_jobs
    from workers.cli import job_json

    label = parse_labels(labels)
    try:
        page = list_jobs(state=state, provider=provider, tenant=tenant, label=label or None,
                         since=parse_since(since), cursor=cursor, limit=limit)
    except EnhanceError as exc:
        raise _fail(exc) from exc
    if as_json:
        click.echo(json.dumps({"jobs": [job_json(r) for r in page.jobs],
                               "next_cursor": page.next_cursor}))
        return
    for r in page.jobs:
        labels_text = ",".join(f"{k}={v}" for k, v in r.labels.items())
        click.echo(f"{r.id}  {r.state.value:<10} {r.provider:<8} {r.model:<12} {r.tenant:<10} "
                   f"{r.created_at:%Y-%m-%d %H:%M:%S}  {labels_text}")
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}", err=True)


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def cancel(job_id: str, as_json: bool) -> None:
    """Cancel JOB_ID: exit 0 when it is cancelled, 1 when it could not be (storing, ended)."""
    from tasks.producer import cancel as cancel_job

    try:
        answer = cancel_job(job_id)
    except EnhanceError as exc:
        raise _fail(exc) from exc
    click.echo(json.dumps(answer.to_dict()) if as_json else f"job {job_id}: {answer.message}")
    if answer.state != JobState.CANCELLED.value:
        sys.exit(EXIT_NOT_DONE)


def register(group: click.Group) -> None:
    """Add these commands to the ``enhance`` group."""
    for command in (get, url, jobs, cancel):
        group.add_command(command)
