"""The ``enhance`` command: one entry point for every role.

    enhance submit SOURCE --provider hitpaw [--model NAME] [--tenant T] [--priority P] [--wait]
    enhance status JOB_ID [--json]
    enhance worker [--queues Q,...] [--concurrency N]
    enhance beat
    enhance flower [--port 5555] [--address 127.0.0.1]
    enhance sandbox [--host 127.0.0.1] [--port 8080] [fault options]
    enhance stats [--json]
    enhance resume PROVIDER
    enhance metrics [--port 9808] [--address 127.0.0.1]
    enhance healthcheck
    enhance lifecycle [--json]
    enhance dev [--concurrency 2]
    enhance demo
    enhance get | url | jobs | cancel       (workers.cli_jobs)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tempfile
import threading
import traceback

import click

from workers import cli_jobs
from workers.cli_errors import (  # noqa: F401 (EXIT_* are the CLI's documented statuses)
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliFailure,
    failure_for,
    safe_url,
    settings_failure,
)
from workers.constants import ALL_QUEUES, STORE_QUEUE
from workers.settings import get_settings

#: Commands that serve or run a stack: they log at LOG_LEVEL; the others log only warnings
#: (and errors) unless -v, so no log line breaks a progress bar or a command's output.
SERVING_COMMANDS = {"worker", "beat", "flower", "sandbox", "metrics", "dev", "demo"}
#: Commands that start their own stack and never read ``.enhance/dev.env``.
OWN_STACK_COMMANDS = {"dev", "demo"}
#: Commands that do not use the job store; every other one checks it answers first.
NO_JOB_STORE_COMMANDS = SERVING_COMMANDS | {"lifecycle"}
PREFLIGHT_TIMEOUT_S = 3.0


def _settings_or_exit():
    from pydantic import ValidationError

    try:
        return get_settings()
    except ValidationError as exc:
        raise settings_failure(exc) from exc


class EnhanceGroup(click.Group):
    """The ``enhance`` group: every command's failures are worded here (workers/cli_errors.py)."""

    def invoke(self, ctx: click.Context):
        # Ctrl-C ends any command (exit 130 below), even when whatever started us passed
        # SIGINT on ignored: a background job of a script does, and Python then installs no
        # handler of its own (`enhance submit --wait` waited on for good).
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise CliFailure("interrupted", EXIT_INTERRUPTED) from None
        except Exception as exc:  # noqa: BLE001 - worded below, or re-raised with -v
            raise self._worded(exc, verbose=ctx.params.get("verbose", False)) from exc

    @staticmethod
    def _worded(exc: Exception, verbose: bool) -> Exception:
        try:
            settings = get_settings()
        except Exception:  # noqa: BLE001 - the settings are what failed
            settings = None
        failure = failure_for(exc, settings)
        if verbose:
            traceback.print_exc()
        if failure is not None:
            return failure
        if verbose:
            return CliFailure(f"internal error: {type(exc).__name__}", EXIT_FAILED)
        return CliFailure(f"internal error: {type(exc).__name__}: {exc} (enhance -v ... prints "
                          "the traceback)", EXIT_FAILED)


@click.group(cls=EnhanceGroup)
@click.option("-v", "--verbose", is_flag=True,
              help="Log at LOG_LEVEL (INFO) on stderr and print tracebacks of failures.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """enhance-queue: photo enhancement through paid AI APIs, at scale.

    \b
    Exit statuses: 0 done; 1 the job failed or the request was refused; 2 bad arguments
    or settings; 3 --wait gave up; 4 Redis, the broker, S3 or a provider does not answer;
    130 interrupted.
    """
    from workers.devenv import describe, load_dev_env
    from workers.logs import configure_logging
    from workers.runtime import current_runtime

    embedded = current_runtime() is not None  # called in-process by code that set one up
    command = ctx.invoked_subcommand
    if not embedded and command not in OWN_STACK_COMMANDS and (loaded := load_dev_env()):
        get_settings.cache_clear()
        click.echo(describe(*loaded), err=True)
    settings = _settings_or_exit()
    configure_logging(settings)
    if not verbose and command not in SERVING_COMMANDS:
        logging.getLogger().setLevel(logging.WARNING)
    if not embedded and command not in NO_JOB_STORE_COMMANDS:
        _job_store_preflight(settings)


def _job_store_preflight(settings) -> None:
    """PING the job store once, without retries: a command's own client rides through a
    Redis restart (about 15 s of retries), which leaves a person staring at nothing."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    if settings.redis_sentinels:
        return  # the Sentinels name the primary; the command's own client asks them
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=PREFLIGHT_TIMEOUT_S,
                                  socket_timeout=PREFLIGHT_TIMEOUT_S, retry=Retry(NoBackoff(), 0))
    try:
        client.ping()  # a failure is worded by EnhanceGroup: the URL, exit status 4
    finally:
        client.close()


def job_json(record) -> dict:
    """The ``--json`` form of a job record."""
    data = {
        "job_id": record.id, "state": record.state.value, "provider": record.provider,
        "model": record.model, "output_uri": record.output_uri, "progress": record.progress,
        "cost": record.cost, "provider_job_id": record.provider_job_id,
        "polls": record.poll_count, "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "error": record.error.model_dump(exclude_none=True) if record.error else None,
        "tenant": record.tenant, "fingerprint": record.fingerprint,
        "reused_from": record.reused_from, "follows": record.follows,
        "labels": record.labels,
    }
    if record.output:
        data["output"] = record.output.model_dump()
    if record.notify is not None:
        from tasks.notify import status_json

        data["notify"] = status_json(record)
    return data


def _print_job(record, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(job_json(record)))
        return
    click.echo(f"job {record.id}: {record.state.value}")
    if record.output:
        click.echo(f"  output: {record.output.uri} ({record.output.width}x{record.output.height}, "
                   f"{record.output.size_bytes} bytes)")
    if record.reused_from:
        click.echo(f"  reused from: job {record.reused_from} (cost 0, no provider call)")
    elif record.follows:
        click.echo(f"  waiting on: job {record.follows} (same image, already in flight)")
    if record.error:
        click.echo(f"  error: {record.error.code}: {record.error.message}")
    if record.notify is not None:  # webhook attempts, on_done callback
        from tasks.notify import status_lines

        click.echo("\n".join(status_lines(record)))


def _parse_options(pairs: tuple[str, ...]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--option")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def models_help() -> str:
    """The epilog of ``submit --help``: each provider's models, its default first."""
    from providers import PROVIDERS

    lines = ["\b", "Models (--model; each provider's default first):"]
    for name, cls in PROVIDERS.items():
        default = cls.default_model()
        others = [m for m in cls.models() if m != default]
        lines.append(f"  {name}: {default} (default), {', '.join(others)}")
    return "\n".join(lines)


@main.command(epilog=models_help())
@click.argument("source")
@click.option("--provider", type=click.Choice(["hitpaw", "picwish"]), required=True)
@click.option("--model", default=None, help="Model name (the provider's default if omitted; "
              "listed below).")
@click.option("--option", "options", multiple=True, help="Provider option KEY=VALUE (repeatable).")
@click.option("--idempotency-key", default=None, help="The same key twice pays once.")
@click.option("--tenant", default="default", show_default=True,
              help="Whose job it is (admission serves tenants in turn).")
@click.option("--reuse", "reuse_mode", type=click.Choice(["yes", "no", "url"]), default="yes",
              show_default=True, help="Reuse an identical job's result (url: trust URLs too).")
@click.option("--priority", type=click.Choice(["interactive", "batch"]), default="interactive",
              show_default=True, help="Admission lane.")
@click.option("--wait", is_flag=True, help="Show the job's state and progress until it ends.")
@click.option("--timeout", "timeout_s", default=3600.0, show_default=True, help="--wait limit, s.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def submit(source, provider, model, options, idempotency_key, tenant, reuse_mode, priority, wait,
           timeout_s, as_json) -> None:
    """Enqueue SOURCE (URL, s3:// URI or local file) for enhancement."""
    from tasks.producer import enqueue, get_job

    reuse = {"yes": True, "no": False, "url": "url"}[reuse_mode]
    job_id = enqueue(source, provider, model, _parse_options(options),
                     idempotency_key=idempotency_key, tenant=tenant, reuse=reuse,
                     priority=priority)
    if not wait:
        _print_job(get_job(job_id), as_json)
        return
    from workers.cli_wait import wait_for_job

    record = wait_for_job(job_id, timeout_s, show_progress=not as_json)
    _print_job(record, as_json)
    if not record.state.final:
        click.echo(f"still {record.state.value} after {timeout_s:g} s; the job carries on: "
                   f"enhance status {job_id}", err=True)
        sys.exit(EXIT_TIMEOUT)
    sys.exit(0 if record.state.value == "succeeded" else EXIT_FAILED)


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(job_id: str, as_json: bool) -> None:
    """Show a job's state, output and error."""
    from tasks.producer import get_job

    _print_job(get_job(job_id), as_json)


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--queues", default=",".join(ALL_QUEUES), show_default=True)
@click.option("--concurrency", type=int, default=None, help="Processes (default: cores).")
@click.option("--pool", default="prefork", show_default=True)
@click.option("--hostname", default=None, help="Node name, e.g. worker1@%h.")
@click.option("--loglevel", default=None)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(queues, concurrency, pool, hostname, loglevel, celery_args) -> None:
    """Run a Celery worker on the project's queues."""
    from workers.app import app

    settings = _settings_or_exit()
    argv = [*_banner(settings), "worker", "-Q", queues, "-P", pool, "-E",
            "--loglevel", loglevel or settings.log_level]
    if concurrency:
        argv += ["-c", str(concurrency)]
    if hostname:
        argv += ["-n", hostname]
    argv += ["--prefetch-multiplier", str(prefetch_multiplier(settings, queues))]
    sys.exit(_run_celery(app, argv + list(celery_args)))


def prefetch_multiplier(settings, queues: str) -> int:
    """Messages each process reserves: ``STORE_PREFETCH_MULTIPLIER`` on a store-only worker.

    A store runs for minutes and is late-acked: a store message reserved behind it would
    age towards the visibility timeout. Submits and polls are short (and countdown polls
    are not bounded by prefetch at all), so mixed workers keep the larger multiplier.
    """
    if {q.strip() for q in queues.split(",") if q.strip()} == {STORE_QUEUE}:
        return settings.store_prefetch_multiplier
    return settings.worker_prefetch_multiplier


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--schedule", default=os.path.join(tempfile.gettempdir(), "enhance-beat-schedule"),
              show_default=True, help="Beat's schedule file.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat(schedule, celery_args) -> None:
    """Run the scheduler of the periodic reconcile task (exactly one per deployment)."""
    from workers.app import app

    settings = _settings_or_exit()
    sys.exit(_run_celery(app, [*_banner(settings), "beat", "-s", schedule, "--loglevel",
                              settings.log_level, *celery_args]))


def _run_celery(app, argv: list[str]) -> int:
    """Run a ``celery`` sub-command for ``app``; return its exit status.

    ``app.worker_main`` and ``app.start`` drop the status (click returns it from
    ``main(standalone_mode=False)``), so a worker that gave up on its broker exited 0 and
    a supervisor restarting on failure left it down.
    """
    from celery.bin.celery import celery

    celery.params[0].default = app
    try:
        status = celery.main(args=argv, standalone_mode=False)
    finally:
        celery.params[0].default = None
    return status if isinstance(status, int) else 0


def _banner(settings) -> list[str]:
    """Celery's start-up banner goes to stdout; with JSON logs it would break the stream."""
    return ["--quiet"] if settings.log_format == "json" else []


def is_loopback(address: str) -> bool:
    """True for an address only this host can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if address.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def flower_auth_configured(flower_args: tuple[str, ...] = ()) -> bool:
    """True when Flower will ask for credentials: basic auth or its OAuth settings."""
    given = " ".join(flower_args)
    if os.environ.get("FLOWER_BASIC_AUTH") or "--basic-auth" in given or "--basic_auth" in given:
        return True
    provider = os.environ.get("FLOWER_AUTH_PROVIDER") or "--auth_provider" in given
    allowed = os.environ.get("FLOWER_AUTH") or "--auth=" in given or "--auth " in given
    return bool(provider and allowed)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


FLOWER_AUTH_HINT = ("set FLOWER_BASIC_AUTH=user:password (or Flower's OAuth settings: "
                    "FLOWER_AUTH_PROVIDER, FLOWER_AUTH and FLOWER_OAUTH2_KEY/_SECRET/"
                    "_REDIRECT_URI), or bind --address 127.0.0.1")


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--port", type=int, default=5555, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Any other than loopback needs FLOWER_BASIC_AUTH (or Flower's OAuth).")
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower(port, address, flower_args) -> None:
    """Run Flower for this app (set FLOWER_BASIC_AUTH=user:password)."""
    if not is_loopback(address) and not flower_auth_configured(flower_args):
        raise click.ClickException(f"refusing to serve Flower on {address} without "
                                   f"authentication: {FLOWER_AUTH_HINT}")
    if not is_loopback(address) and _truthy(os.environ.get("FLOWER_UNAUTHENTICATED_API")):
        raise click.ClickException(f"refusing to serve Flower's API without a login on "
                                   f"{address}: unset FLOWER_UNAUTHENTICATED_API, or bind "
                                   "--address 127.0.0.1")
    from workers.app import app

    app.start(["flower", f"--port={port}", f"--address={address}", *flower_args])


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--processing-time", nargs=2, type=float, default=(1.0, 5.0), show_default=True,
              help="Job time drawn uniformly between MIN and MAX seconds.")
@click.option("--result-ttl", type=float, default=3600.0, show_default=True,
              help="Seconds result URLs keep working.")
@click.option("--picwish-qps", type=float, default=2.0, show_default=True,
              help="PicWish requests per second per key (0 = no cap).")
@click.option("--hitpaw-qps", type=float, default=0.0, show_default=True,
              help="HitPaw requests per second per key (0 = no cap).")
@click.option("--rate-429", type=float, default=0.0, help="Fraction answered 429.")
@click.option("--rate-5xx", type=float, default=0.0, help="Fraction answered 5xx.")
@click.option("--rate-job-failure", type=float, default=0.0, help="Fraction of jobs failing.")
@click.option("--rate-malformed", type=float, default=0.0, help="Fraction of malformed bodies.")
@click.option("--rate-slow", type=float, default=0.0, help="Fraction answered slowly.")
@click.option("--slow-response", "slow_response_s", type=float, default=0.0,
              help="Seconds a slow answer takes.")
@click.option("--create-latency", "create_latency_s", nargs=2, type=float, default=(0.0, 0.0),
              help="A submit's answer comes MIN-MAX seconds late (job already charged).")
@click.option("--hitpaw-coins", type=int, default=None, help="HitPaw balance (default: no limit).")
@click.option("--picwish-credits", type=int, default=None, help="PicWish balance (default: no limit).")
@click.option("--large-result-bytes", type=int, default=None, help="Pad results to this size.")
@click.option("--seed", type=int, default=None)
def sandbox(host, port, processing_time, result_ttl, picwish_qps, hitpaw_qps, **faults) -> None:
    """Run the provider sandbox: both vendor APIs on one base URL."""
    from providers.sandbox import SandboxConfig, serve

    config = SandboxConfig(
        processing_time_s=processing_time, result_ttl_s=result_ttl,
        picwish_qps=picwish_qps or None, hitpaw_qps=hitpaw_qps or None, **faults,
    )
    serve(config, host=host, port=port)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stats(as_json: bool) -> None:
    """Job-level figures: jobs by state, provider requests, 429s, cost, store lag, queues."""
    from workers.metrics import collect_stats, queue_depths
    from workers.runtime import get_runtime

    figures = collect_stats(get_runtime())
    figures["queues"] = queue_depths() or {}  # messages waiting per Celery queue
    if as_json:
        click.echo(json.dumps(figures))
        return
    for section, values in figures.items():
        if not values:
            continue
        click.echo(f"{section}:")
        for name, value in values.items():
            click.echo(f"  {name:<28} {format_figure(name, value):>12}")


def format_figure(name: str, value: float) -> str:
    """One figure of ``enhance stats``: whole numbers without a fraction, others with two
    decimals; a daily limit of -1 is "none"."""
    if name == "daily_limit" and value == -1:
        return "none"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


@main.command()
@click.argument("provider", type=click.Choice(["hitpaw", "picwish"]))
@click.option("--reason", default="paused by the operator", show_default=True,
              help="Shown in `enhance stats` and the log.")
def pause(provider: str, reason: str) -> None:
    """Hold PROVIDER's admission for every worker until `enhance resume PROVIDER`.

    Queued and new jobs wait (their deadlines still run); jobs already submitted are
    polled and stored as usual.
    """
    from tasks.spend import hold
    from workers.runtime import get_runtime

    fresh = hold(get_runtime(), provider, reason)
    click.echo(f"{provider}: admission {'held' if fresh else 'already held'} ({reason}); "
               f"`enhance resume {provider}` lifts it")


@main.command()
@click.argument("provider", type=click.Choice(["hitpaw", "picwish"]))
def resume(provider: str) -> None:
    """Lift PROVIDER's out-of-credit pause, spend-cap holds and `enhance pause`;
    admission starts again."""
    from tasks.admission import resume as resume_admission
    from workers.runtime import get_runtime

    if resume_admission(get_runtime(), provider):
        click.echo(f"{provider}: admission resumed")
    else:
        click.echo(f"{provider}: was not held")


@main.command()
@click.option("--port", type=int, default=None, help="Default: METRICS_PORT.")
@click.option("--address", default=None, help="Default: METRICS_BIND (127.0.0.1).")
def metrics(port, address) -> None:
    """Serve job-level Prometheus metrics (run one per deployment)."""
    from workers.metrics import serve_metrics

    settings = _settings_or_exit()
    serve_metrics(port or settings.metrics_port, address or settings.metrics_bind)


@main.command()
def healthcheck() -> None:
    """Exit 0 when the broker and the job store answer (4 when one does not)."""
    from workers.embedded import redis_answers
    from workers.runtime import connect_redis

    settings = _settings_or_exit()
    client = connect_redis(settings)
    try:
        client.ping()  # a failure is worded by the group: the job store, its URL, exit 4
    finally:
        client.close()
    if settings.celery_broker_url.startswith("redis"):
        if not redis_answers(settings.celery_broker_url, timeout_s=3):
            raise CliFailure(f"the broker does not answer at {safe_url(settings.celery_broker_url)} "
                             "(CELERY_BROKER_URL); is it running there?", EXIT_UNREACHABLE)
    else:
        from workers.app import app

        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
    click.echo("ok")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the bucket's rules as JSON.")
def lifecycle(as_json: bool) -> None:
    """Put the bucket's lifecycle backstop: staged inputs expire, stale uploads are aborted.

    Rules of other owners on the bucket are kept; running it again changes nothing.
    """
    from storage.objects import ObjectStore

    settings = _settings_or_exit()
    store = ObjectStore.from_settings(settings)
    rules = store.apply_lifecycle(settings.lifecycle_inputs_expire_days,
                                  settings.lifecycle_abort_incomplete_days)
    if as_json:
        click.echo(json.dumps(rules))
        return
    for rule in rules:
        click.echo(f"{rule.get('ID', '?'):<36} {json.dumps({k: v for k, v in rule.items() if k != 'ID'})}")


@main.command()
@click.option("--concurrency", type=int, default=2, show_default=True,
              help="Worker processes.")
@click.pass_context
def dev(ctx: click.Context, concurrency: int) -> None:
    """A local stack that stays up: Redis, S3, the sandbox, a worker and beat.

    Starts what is not configured (real providers when their API keys are set), writes
    the settings to .enhance/dev.env, where every other enhance command run from here
    finds them, and stops everything on Ctrl-C.
    """
    from pathlib import Path

    from workers.dev import run_dev

    sys.exit(run_dev(Path.cwd(), concurrency, verbose=ctx.parent.params["verbose"]))


@main.command()
@click.option("--timeout", "timeout_s", default=300.0, show_default=True)
@click.option("--report", "report", default=".enhance/demo-report.html", show_default=True,
              help="HTML report: each input beside its stored result ('' for none).")
def demo(timeout_s: float, report: str) -> None:
    """The main job: enhance sample images through both providers, on embedded defaults."""
    from pathlib import Path

    from workers.demo import run_demo

    sys.exit(run_demo(timeout_s, Path(report) if report else None))


cli_jobs.register(main)  # get, url, jobs, cancel

if __name__ == "__main__":
    main()
