"""Every app service of docker-compose.yml, started here with its real command, comes up.

The compose file is resolved by ``docker-compose config`` (interpolation and merge keys are
Compose's own) with a ``.env`` like an operator's: real-looking provider keys, an S3
secret, Flower's login, ``LOG_FORMAT=json`` and fast polling. Each app service's
``command`` runs behind the Dockerfile's ``ENTRYPOINT`` (``enhance``, this venv's script),
in a bare environment holding only the image's ``ENV`` and the service's ``environment``,
from a working directory outside the repository, as in the image. Container hostnames are
translated to loopback: ``redis`` to a private ``redis-server`` (so compose's db 0 broker
and db 1 job store stay apart, and no other test run can flush them), ``minio`` to moto's
S3 server, ``sandbox`` to the ``sandbox`` service started here; published ports become
free ones. No Docker engine is needed, and nothing of the code path is faked.

One stack serves the whole module; the job-level checks run a handful of real jobs through
it and compare ``enhance stats --json`` and ``/metrics`` with the job records and the
sandbox's own request log.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from statistics import mean
from typing import Any

import dockerfile_parse
import pytest
import requests
import yaml
from celery.utils.nodenames import host_format
from prometheus_client.parser import text_string_to_metric_families

from storage.jobs import JobRecord, JobState
from tests.conftest import make_s3_client
from tests.ops.test_stack_files import DOCKERFILE, run_compose_config
from tests.system import FAST, image_bytes
from workers.app import app, celery_config
from workers.constants import ALL_QUEUES
from workers.embedded import LOOPBACK, embedded_redis, free_port
from workers.runtime import Runtime
from workers.settings import Settings

pytestmark = pytest.mark.integration

#: Secrets an operator puts in .env. None may appear in any service's output.
HITPAW_KEY = "hp-live-" + secrets.token_hex(12)
PICWISH_KEY = "pw-live-" + secrets.token_hex(12)
S3_SECRET = "s3-secret-" + secrets.token_hex(12)
FLOWER_USER, FLOWER_PASSWORD = "ops", "fl-" + secrets.token_hex(10)
SECRETS = (HITPAW_KEY, PICWISH_KEY, S3_SECRET, FLOWER_PASSWORD)

ENV_FILE = {
    **FAST,
    "LOG_FORMAT": "json",
    "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}",
    "HITPAW_API_KEY": HITPAW_KEY,
    "PICWISH_API_KEY": PICWISH_KEY,
    "AWS_SECRET_ACCESS_KEY": S3_SECRET,
}
CONTAINER_HOSTS = ("redis", "minio", "sandbox", "rabbitmq")
START_TIMEOUT_S = 45


# --- the stack -------------------------------------------------------------------------


class Service:
    """One compose service running here as a subprocess."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path,
                 log_dir: Path, ports: dict[str, int]) -> None:
        self.name, self.argv, self.env, self.ports = name, argv, env, ports
        self.out_path, self.err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err,
                                         start_new_session=True)

    @property
    def port(self) -> int:
        return next(iter(self.ports.values()))

    def output(self) -> str:
        return self.out_path.read_text() + self.err_path.read_text()

    def alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"{self.name} exited {self.proc.returncode}:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Stack:
    """The compose file's app services on loopback, and what the test needs to reach them."""

    def __init__(self, compose: dict, entrypoint: list[str], image_env: dict[str, str],
                 hosts: dict[str, str], root: Path) -> None:
        self.compose, self.entrypoint, self.image_env = compose, entrypoint, image_env
        self.hosts, self.root = hosts, root
        self.workdir = root / "work"  # the image's WORKDIR, outside the repository
        self.logs = root / "logs"
        for path in (self.workdir, self.logs, root / "tmp", root / "home"):
            path.mkdir()
        self.services: dict[str, Service] = {}
        self.extra_outputs: list[str] = []  # one-shot commands (stats, healthcheck)

    # compose -> here
    def env_of(self, name: str) -> dict[str, str]:
        """The service's environment with container hostnames translated to loopback."""
        env = {"PATH": os.environ["PATH"], "HOME": str(self.root / "home"),
               "TMPDIR": str(self.root / "tmp"), **self.image_env}
        for key, value in (self.compose[name].get("environment") or {}).items():
            if value is None:  # passed through but unset: the container does not get it
                continue
            value = str(value)
            for container, local in self.hosts.items():
                value = re.sub(rf"//{re.escape(container)}(?=/|$)", f"//{local}", value)
            assert not re.search(rf"//({'|'.join(CONTAINER_HOSTS)})[:/]", value), (name, key)
            if key == "URL_ALLOWLIST":  # container names: here, the loopback address
                value = ",".join(LOOPBACK if entry.strip() in CONTAINER_HOSTS else entry
                                 for entry in value.split(","))
            env[key] = value
        return env

    def argv_of(self, name: str, ports: dict[str, int]) -> list[str]:
        """ENTRYPOINT + command, with listening addresses on loopback and free ports."""
        command = [str(part) for part in self.compose[name]["command"]]
        for i, part in enumerate(command[:-1]):
            if part in ("--host", "--address"):
                command[i + 1] = LOOPBACK
            if part == "--port":
                command[i + 1] = str(ports["--port"])
        binary = shutil.which(self.entrypoint[0], path=str(Path(sys.executable).parent))
        assert binary, f"{self.entrypoint[0]} is not installed in this venv"
        return [binary, *self.entrypoint[1:], *command]

    def start(self, name: str, ports: dict[str, int] | None = None,
              env: dict[str, str] | None = None) -> Service:
        ports = ports or {}
        service = Service(name, self.argv_of(name, ports), {**self.env_of(name), **(env or {})},
                          self.workdir, self.logs, ports)
        self.services[name] = service
        return service

    def run(self, args: list[str], service: str = "worker", **env: str) -> subprocess.CompletedProcess:
        """A one-shot ``enhance`` command in ``service``'s environment (docker compose exec)."""
        binary = shutil.which(self.entrypoint[0], path=str(Path(sys.executable).parent))
        result = subprocess.run([binary, *args], env={**self.env_of(service), **env},
                                cwd=self.workdir, capture_output=True, text=True, timeout=60)
        self.extra_outputs.append(result.stdout + result.stderr)
        return result

    def url(self, service: str, path: str = "") -> str:
        return f"http://{LOOPBACK}:{self.services[service].port}{path}"

    def settings(self, service: str = "worker") -> Settings:
        env = self.env_of(service)
        return Settings(**{k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields})

    def node(self, service: str) -> str:
        command = self.compose[service]["command"]
        return host_format(command[command.index("--hostname") + 1])

    def queues(self, service: str) -> set[str]:
        command = self.compose[service]["command"]
        return set(command[command.index("--queues") + 1].split(","))

    def stop(self) -> None:
        for service in self.services.values():
            if service.proc.poll() is None:
                service.proc.send_signal(signal.SIGTERM)
        for service in self.services.values():
            service.stop()


def compose_services(tmp_path: Path) -> dict:
    lines = [f"{key}={value}" for key, value in ENV_FILE.items()]
    result = run_compose_config(tmp_path, lines)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def dockerfile() -> tuple[list[str], list[str], dict[str, str]]:
    """The image's ENTRYPOINT, HEALTHCHECK command and ENV."""
    parser = dockerfile_parse.DockerfileParser(path=str(DOCKERFILE))
    entrypoint = healthcheck = None
    for item in parser.structure:
        if item["instruction"] == "ENTRYPOINT":
            entrypoint = json.loads(item["value"])
        if item["instruction"] == "HEALTHCHECK":
            healthcheck = json.loads(item["value"].split("CMD", 1)[1])
    assert entrypoint and healthcheck
    return entrypoint, healthcheck, dict(parser.envs)


def app_service_names(compose: dict) -> set[str]:
    """The services built from this project's image."""
    image = compose["worker"]["image"]
    return {name for name, svc in compose.items() if svc.get("image") == image}


def use_broker(conf: dict[str, Any]) -> None:
    """Point this process's Celery app at another broker (its pools are bound to the old one)."""
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    app.conf.update(conf)


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = START_TIMEOUT_S,
              services: tuple[Service, ...] = ()) -> Any:
    """Call ``check`` until it returns something truthy; fail with ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        for service in services:
            service.alive()
        try:
            value = check()
        except (requests.RequestException, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, s3_endpoint):
    root = tmp_path_factory.mktemp("stack")
    compose = compose_services(root)
    entrypoint, _, image_env = dockerfile()
    saved_conf = {key: app.conf[key] for key in celery_config(Settings())}
    with ExitStack() as cleanup:
        redis_url = cleanup.enter_context(embedded_redis())
        sandbox_port = free_port()
        hosts = {
            "redis:6379": redis_url.split("//", 1)[1].split("/", 1)[0],
            "minio:9000": s3_endpoint.split("//", 1)[1],
            "sandbox:8080": f"{LOOPBACK}:{sandbox_port}",
        }
        stack = Stack(compose, entrypoint, image_env, hosts, root)
        cleanup.callback(stack.stop)
        # The sandbox stands in for the real vendors, so it accepts the operator's keys.
        sandbox = stack.start("sandbox", {"--port": sandbox_port},
                              env={"HITPAW_API_KEY": HITPAW_KEY, "PICWISH_API_KEY": PICWISH_KEY})
        # minio-init: the bucket exists before the workers start.
        settings = stack.settings()
        s3 = make_s3_client(settings.s3_endpoint_url)
        if settings.s3_bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=settings.s3_bucket)
        wait_for("the sandbox", lambda: requests.get(stack.url("sandbox", "/_sandbox/health"),
                                                     timeout=2).ok, services=(sandbox,))
        for name in ("worker", "store-worker", "beat"):
            stack.start(name)
        stack.start("flower", {"--port": free_port()})
        metrics_port = free_port()
        stack.start("metrics", {"METRICS_PORT": metrics_port}, env={"METRICS_PORT": str(metrics_port)})

        use_broker(celery_config(settings))
        cleanup.callback(use_broker, saved_conf)
        yield stack


def ping(stack: Stack, service: str) -> list:
    return wait_for(f"{service} to answer a ping",
                    lambda: app.control.ping(destination=[stack.node(service)], timeout=0.5),
                    services=(stack.services[service],))


# --- every service comes up ------------------------------------------------------------


def test_every_app_service_of_the_compose_file_runs_here(stack):
    assert set(stack.services) == app_service_names(stack.compose)
    for service in stack.services.values():
        service.alive()


@pytest.mark.parametrize("service", ["worker", "store-worker"])
def test_worker_answers_a_ping_and_consumes_exactly_its_compose_queues(stack, service):
    node = stack.node(service)
    [reply] = ping(stack, service)
    assert reply == {node: {"ok": "pong"}}

    queues = app.control.inspect(destination=[node], timeout=2).active_queues()

    assert {q["name"] for q in queues[node]} == stack.queues(service)


def test_beat_sends_reconcile_and_a_worker_runs_it(stack):
    beat, worker = stack.services["beat"], stack.services["worker"]
    wait_for("beat to send reconcile",
             lambda: "Sending due task reconcile (enhance.reconcile)" in beat.output(),
             services=(beat,))
    wait_for("a worker to run reconcile",
             lambda: re.search(r"Task enhance\.reconcile\[[0-9a-f-]+\] succeeded",
                               worker.output()), services=(worker,))


def flower_get(stack: Stack, path: str, auth: tuple[str, str] | None = None) -> requests.Response:
    return requests.get(stack.url("flower", path), auth=auth, timeout=5)


def test_flower_lists_the_workers_behind_its_login(stack):
    flower = stack.services["flower"]
    login = (FLOWER_USER, FLOWER_PASSWORD)
    nodes = {stack.node("worker"), stack.node("store-worker")}

    listed = wait_for("Flower to list both workers", lambda: nodes <= set(
        flower_get(stack, "/api/workers?refresh=1", login).json()), services=(flower,))

    assert listed
    assert flower_get(stack, "/api/workers").status_code == 401
    assert flower_get(stack, "/api/workers", (FLOWER_USER, "wrong")).status_code == 401
    workers = flower_get(stack, "/api/workers", login).json()
    node = stack.node("store-worker")
    assert {q["name"] for q in workers[node]["active_queues"]} == stack.queues("store-worker")


def test_flower_metrics_and_healthcheck_answer_without_login(stack):
    flower = stack.services["flower"]
    health = wait_for("Flower's healthcheck", lambda: flower_get(stack, "/healthcheck"),
                      services=(flower,))
    assert health.status_code == 200 and health.text == "OK"

    def online() -> set[str]:  # fed by the workers' heartbeat events (-E)
        text = flower_get(stack, "/metrics").text
        return {sample.labels["worker"] for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "flower_worker_online" and sample.value == 1}

    nodes = {stack.node("worker"), stack.node("store-worker")}
    assert wait_for("Flower's /metrics to show both workers online",
                    lambda: nodes <= online(), services=(flower,))


def test_sandbox_answers_its_health(stack):
    health = requests.get(stack.url("sandbox", "/_sandbox/health"), timeout=5)
    assert health.status_code == 200 and health.json()["ok"] is True


def scrape(stack: Stack) -> dict[tuple[str, frozenset], float]:
    """Every sample of the metrics service: (name, labels) -> value."""
    text = requests.get(stack.url("metrics", "/metrics"), timeout=5).text
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_service_serves_job_metrics(stack):
    samples = wait_for("the metrics service", lambda: scrape(stack),
                       services=(stack.services["metrics"],))
    for state in JobState:
        assert ("enhance_jobs", frozenset({("state", state.value)})) in samples
    for provider in ("hitpaw", "picwish"):
        for kind in ("submit", "poll"):
            key = frozenset({("provider", provider), ("kind", kind)})
            assert ("enhance_provider_requests_total", key) in samples


@pytest.mark.parametrize("service", ["sandbox", "worker", "store-worker", "beat", "flower",
                                     "metrics"])
def test_the_containers_healthcheck_passes(stack, service):
    """Compose's healthcheck of the service, or the image's HEALTHCHECK when it has none."""
    svc = stack.services[service]
    check = stack.compose[service].get("healthcheck")
    if check:
        assert check["test"][0] == "CMD"
        argv = [sys.executable if part == "python" else part for part in check["test"][1:]]
        container_port = {"sandbox": 8080, "flower": 5555, "metrics": 9808}[service]
        argv = [part.replace(f":{container_port}/", f":{svc.port}/") for part in argv]
    else:
        _, healthcheck, _ = dockerfile()
        argv = [shutil.which(healthcheck[0], path=str(Path(sys.executable).parent)),
                *healthcheck[1:]]
    results: list[subprocess.CompletedProcess] = []

    def passes() -> bool:
        results.append(subprocess.run(argv, env=svc.env, cwd=stack.workdir, capture_output=True,
                                      text=True, timeout=30))
        return results[-1].returncode == 0

    wait_for(f"the healthcheck of {service} to pass", passes, services=(svc,))
    stack.extra_outputs.append(results[-1].stdout + results[-1].stderr)
    assert results[-1].returncode == 0


def test_healthcheck_fails_when_the_job_store_or_the_broker_is_down(stack):
    closed = f"redis://{LOOPBACK}:{free_port()}/0"
    store_down = stack.run(["healthcheck"], REDIS_URL=closed)
    broker_down = stack.run(["healthcheck"], CELERY_BROKER_URL=closed)
    assert store_down.returncode != 0 and "job store" in store_down.stderr
    assert broker_down.returncode != 0 and "broker" in broker_down.stderr


# --- job-level figures against a real run ----------------------------------------------


class Run:
    """The jobs run through the stack and what the sandbox saw of them."""

    def __init__(self, records: list[JobRecord], sandbox_log: list[dict]) -> None:
        self.records, self.sandbox_log = records, sandbox_log

    def of(self, provider: str) -> list[JobRecord]:
        return [r for r in self.records if r.provider == provider]

    def sandbox_count(self, **match: Any) -> int:
        return sum(all(rec[k] == v for k, v in match.items()) for rec in self.sandbox_log)


@pytest.fixture(scope="module")
def run(stack):
    """Succeeded HitPaw and PicWish jobs, one unknown model, and PicWish 429s.

    The sandbox keeps PicWish's documented 2 QPS per key while the workers' budget
    allows far more (FAST), so PicWish answers some requests 429.
    """
    sandbox = stack.url("sandbox")
    requests.post(f"{sandbox}/_sandbox/config", json={"processing_time_s": [0.05, 0.3]},
                  timeout=5).raise_for_status()
    ping(stack, "worker")
    ping(stack, "store-worker")
    runtime = Runtime(stack.settings())
    try:
        from tasks.producer import enqueue

        ids = [enqueue(image_bytes(64, 48), "hitpaw", "general_2x", runtime=runtime,
                       reuse=False) for _ in range(2)]
        ids.append(enqueue(image_bytes(64, 48), "hitpaw", "no_such_model", runtime=runtime))
        ids += [enqueue(f"{sandbox}/_sandbox/samples/product.png", "picwish", "ultra_hd",
                        runtime=runtime) for _ in range(4)]
        records = wait_for("every job to end", lambda: (lambda rs: rs if all(
            r.state.final for r in rs) else None)(runtime.jobs.get_many(ids)), timeout_s=60)
        stored = sum(r.state is JobState.SUCCEEDED for r in records)
        # The counters follow the state writes by a few microseconds.
        wait_for("the counters to settle",
                 lambda: runtime.stats.read().get("stored", 0) == stored, timeout_s=10)
        log = requests.get(f"{sandbox}/_sandbox/requests", timeout=5).json()
        yield Run(records, log)
    finally:
        runtime.close()


def test_the_run_has_successes_a_failure_and_429s(run):
    states = Counter((r.provider, r.state.value) for r in run.records)
    assert states == {("hitpaw", "succeeded"): 2, ("hitpaw", "failed"): 1,
                      ("picwish", "succeeded"): 4}, [r.error for r in run.records]
    assert run.sandbox_count(provider="picwish", status=429) > 0


def expected_figures(run: Run) -> dict:
    """What ``enhance stats --json`` must say, from the records and the sandbox's log."""
    figures: dict[str, Any] = {"jobs": {s.value: 0 for s in JobState}}
    figures["jobs"].update(Counter(r.state.value for r in run.records))
    for provider in ("hitpaw", "picwish"):
        figures[provider] = {
            "submits": run.sandbox_count(provider=provider, kind="submit"),
            "polls": run.sandbox_count(provider=provider, kind="query"),
            "rate_limited": run.sandbox_count(provider=provider, status=429),
            # submits answered with a status that does not prove "not taken" (no timeouts here)
            "submit_outcome_unknown": sum(
                run.sandbox_count(provider=provider, kind="submit", status=status)
                for status in (500, 504)),
            "cost": pytest.approx(sum(r.cost or 0 for r in run.of(provider))),
            "in_flight": 0,
            "reused": sum(r.reused_from is not None for r in run.of(provider)),
            "cost_saved": 0,
            "waiting_interactive": 0,
            "waiting_batch": 0,
            "admitted": 0,
            "paused_out_of_credit": 0,
            "held_by_operator": 0,
            "spent_today": pytest.approx(sum(r.cost or 0 for r in run.of(provider))),
            "daily_limit": -1,
        }
    succeeded = [r for r in run.records if r.state is JobState.SUCCEEDED]
    lags = [(r.transitions["succeeded"] - r.transitions["storing"]).total_seconds()
            for r in succeeded]
    figures["results"] = {"stored": len(succeeded), "expired": 0,
                          "store_lag_avg_s": pytest.approx(mean(lags), abs=1e-3)}
    figures["failures"] = dict(Counter(r.error.code for r in run.records if r.error))
    return figures


def test_enhance_stats_reports_the_records_and_the_sandbox_log(stack, run):
    result = stack.run(["stats", "--json"])

    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    queues = figures.pop("queues")  # read from the broker now: beat's reconcile may be in one
    assert set(queues) == set(ALL_QUEUES) and all(n >= 0 for n in queues.values()), queues
    no_webhooks = {"delivered": 0, "gave_up": 0, "owed": 0, "retrying": 0}
    assert figures.pop("notify") == no_webhooks  # no job of this run asked for one
    assert figures == expected_figures(run)


def test_metrics_endpoint_reports_the_same_figures(stack, run):
    figures = expected_figures(run)
    samples = scrape(stack)

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset(labels.items()))]

    for state, count in figures["jobs"].items():
        assert value("enhance_jobs", state=state) == count, state
    for provider in ("hitpaw", "picwish"):
        expected = figures[provider]
        assert value("enhance_provider_requests_total", provider=provider,
                     kind="submit") == expected["submits"]
        assert value("enhance_provider_requests_total", provider=provider,
                     kind="poll") == expected["polls"]
        assert value("enhance_provider_rate_limited_total",
                     provider=provider) == expected["rate_limited"]
        assert value("enhance_provider_cost_total", provider=provider) == expected["cost"]
        assert value("enhance_submit_outcome_unknown_total",
                     provider=provider) == expected["submit_outcome_unknown"]
        assert value("enhance_jobs_in_flight", provider=provider) == 0
    assert value("enhance_results_stored_total") == figures["results"]["stored"]
    assert value("enhance_results_expired_total") == 0
    assert value("enhance_store_lag_avg_seconds") == figures["results"]["store_lag_avg_s"]
    assert figures["failures"]
    for code, count in figures["failures"].items():
        assert value("enhance_job_failures_total", code=code) == count, code


def json_lines(service: Service, streams: tuple[str, ...] = ("out", "err")) -> list[dict]:
    """Every line the service wrote, each of which must be one JSON object (LOG_FORMAT=json)."""
    paths = {"out": service.out_path, "err": service.err_path}
    lines = [line for stream in streams for line in paths[stream].read_text().splitlines()
             if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"{service.name} wrote a line that is not JSON: {line[:300]}")
    return parsed


def test_workers_log_one_json_line_per_job_transition(stack, run):
    lines = json_lines(stack.services["worker"]) + json_lines(stack.services["store-worker"])
    transitions = sorted((line for line in lines if "job_id" in line and "state" in line),
                         key=lambda line: line["ts"])

    for record in run.records:
        mine = [line for line in transitions if line["job_id"] == record.id]
        # "queued" is logged by the producer (this process); the workers log the rest.
        assert [line["state"] for line in mine] == list(record.transitions)[1:], record.id
        for line in mine:
            assert line["provider"] == record.provider
            assert isinstance(line["duration_s"], int | float) and line["duration_s"] >= 0
            assert "cost" in line
        assert mine[-1]["cost"] == record.cost
        assert mine[-1]["duration_s"] == round(record.duration_s(), 3)


@pytest.mark.parametrize("service", ["beat", "metrics", "flower", "sandbox"])
def test_other_services_log_json_too(stack, run, service):
    # The sandbox prints where its keys come from on stdout; its log stream is stderr.
    streams = ("err",) if service == "sandbox" else ("out", "err")
    lines = json_lines(stack.services[service], streams)
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    if service in ("beat", "flower"):
        assert lines  # both log as they start


def test_no_secret_appears_in_any_output(stack, run):
    stack.run(["stats"])
    outputs = {name: svc.output() for name, svc in stack.services.items()}
    outputs.update({f"command {i}": text for i, text in enumerate(stack.extra_outputs)})
    assert outputs["worker"]  # there is something to search
    for name, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, f"a secret appears in the output of {name}"
