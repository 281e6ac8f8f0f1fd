"""The deployment files: docker-compose.yml, ops/Dockerfile, .env.example, ops/k8s/.

The compose file is checked through ``docker-compose config`` (the Debian package
``docker-compose``; no Docker engine needed), so interpolation, merge keys and the schema are
Compose's own, not a re-implementation. The Dockerfile is read with ``dockerfile-parse``.
Settings names come from ``workers.settings.Settings`` itself, so a renamed or new field that
the deployment files miss fails here.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from providers.sandbox.config import DEFAULT_HITPAW_KEY, DEFAULT_PICWISH_KEY
from workers.constants import ADMIT_QUEUE, ALL_QUEUES, MAINTENANCE_QUEUE, STORE_QUEUE
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "ops" / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
K8S_DIR = ROOT / "ops" / "k8s"
PROMETHEUS_FILE = ROOT / "ops" / "prometheus.yml"

SETTINGS_NAMES = {name.upper() for name in Settings.model_fields}
#: Variables app containers may get that are not Settings fields, each read by a library:
#: boto3 (credentials and checksum behaviour), Flower (its login), billiard/Celery
#: (SIGTERM starts the soft shutdown). Keep this short: anything else is a typo or a
#: setting that does not exist.
NON_SETTINGS_ENV = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REQUEST_CHECKSUM_CALCULATION",
    "AWS_RESPONSE_CHECKSUM_VALIDATION",
    "FLOWER_BASIC_AUTH",
    "REMAP_SIGTERM",
}
WORKER_SERVICES = ("worker", "store-worker")
SECRET_WORDS = ("KEY", "SECRET", "PASSWORD", "PASS", "TOKEN", "AUTH")


# --- docker-compose ----------------------------------------------------------------------


def _compose_command() -> list[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (apt-get install -y docker-compose)")
    return [binary]


def run_compose_config(tmp_path: Path, env_lines: list[str]) -> subprocess.CompletedProcess:
    """``docker-compose config`` with only ``env_lines`` as .env and a bare environment.

    The shell's own variables (a REDIS_URL exported for the tests, say) are kept out, so
    the result is what a fresh checkout gets.
    """
    env_file = tmp_path / "compose.env"
    env_file.write_text("\n".join(env_lines) + "\n")
    command = _compose_command() + [
        "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config",
    ]
    bare_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(command, capture_output=True, text=True, env=bare_env, timeout=60)


def compose_config(tmp_path: Path, *env_lines: str) -> dict:
    result = run_compose_config(tmp_path, ["FLOWER_BASIC_AUTH=test:test", *env_lines])
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture
def services(tmp_path) -> dict:
    return compose_config(tmp_path)["services"]


def app_services(services: dict) -> dict:
    """The services that run this project's image (built from ops/Dockerfile)."""
    return {name: svc for name, svc in services.items() if "build" in svc}


def queues_of(command: list[str]) -> list[str]:
    return command[command.index("--queues") + 1].split(",")


def duration_s(value: str | int | float) -> float:
    """Seconds in a Compose duration: ``90s``, ``1m30s``, ``2m``, ``1h``, or a number."""
    if isinstance(value, int | float):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s|us)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a duration: {value!r}"
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    return sum(float(number) * scale[unit] for number, unit in parts)


def test_compose_file_validates_and_has_every_role(services):
    expected = {"redis", "minio", "minio-init", "sandbox", "worker", "store-worker", "beat",
                "flower", "metrics", "prometheus"}
    assert expected <= set(services)
    assert set(app_services(services)) >= {"sandbox", "worker", "store-worker", "beat",
                                           "flower"}
    for svc in app_services(services).values():
        assert svc["build"]["dockerfile"] == "ops/Dockerfile"
        assert Path(svc["build"]["context"]).resolve() == ROOT


COMPOSE_MISSING_AUTH = "set FLOWER_BASIC_AUTH=user:password in .env (cp .env.example .env first)"


def _one_short_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and len(lines[0]) < 300, stderr
    return lines[0]


def test_compose_without_env_file_stops_with_one_short_line(tmp_path):
    result = run_compose_config(tmp_path, [])
    assert result.returncode != 0
    assert _one_short_line(result.stderr).endswith(COMPOSE_MISSING_AUTH)


def test_env_example_as_shipped_stops_compose_on_the_one_required_secret(tmp_path):
    result = run_compose_config(tmp_path, ENV_EXAMPLE.read_text().splitlines())
    assert result.returncode != 0
    assert _one_short_line(result.stderr).endswith(COMPOSE_MISSING_AUTH)


def test_env_example_works_once_its_required_secret_is_set(tmp_path):
    lines = [line if line != "FLOWER_BASIC_AUTH=" else "FLOWER_BASIC_AUTH=admin:s3cret"
             for line in ENV_EXAMPLE.read_text().splitlines()]
    assert lines != ENV_EXAMPLE.read_text().splitlines(), "FLOWER_BASIC_AUTH= is not shipped"
    result = run_compose_config(tmp_path, lines)
    assert result.returncode == 0, result.stderr
    flower = yaml.safe_load(result.stdout)["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "admin:s3cret"


def test_app_services_set_only_real_settings(services):
    for name, svc in app_services(services).items():
        unknown = set(svc.get("environment") or {}) - SETTINGS_NAMES - NON_SETTINGS_ENV
        assert not unknown, f"{name} sets variables that are not settings: {sorted(unknown)}"


def test_every_setting_can_be_set_from_env_file_for_workers(services):
    for name in WORKER_SERVICES:
        missing = SETTINGS_NAMES - set(services[name]["environment"])
        assert not missing, f"{name} never receives {sorted(missing)} from .env"


def test_compose_defaults_are_valid_settings_pointing_at_the_stack(services):
    env = services["worker"]["environment"]
    given = {k.lower(): v for k, v in env.items() if k in SETTINGS_NAMES and v is not None}
    settings = Settings(**given)
    assert settings.celery_broker_url.startswith("redis://redis:6379/")
    assert settings.redis_url.startswith("redis://redis:6379/")
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.hitpaw_base_url == settings.picwish_base_url == "http://sandbox:8080"
    assert env["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"
    # The sandbox gets no key from compose, so the workers must default to the ones it accepts.
    assert env["HITPAW_API_KEY"] == DEFAULT_HITPAW_KEY
    assert env["PICWISH_API_KEY"] == DEFAULT_PICWISH_KEY


def test_real_provider_settings_in_env_file_reach_workers_but_not_the_sandbox(tmp_path):
    services = compose_config(
        tmp_path,
        "HITPAW_BASE_URL=https://api-base.hitpaw.com",
        "HITPAW_API_KEY=real-hitpaw-key",
        "HITPAW_MAX_RPS=3.5",
    )["services"]
    for name in (*WORKER_SERVICES, "beat"):
        env = services[name]["environment"]
        assert env["HITPAW_BASE_URL"] == "https://api-base.hitpaw.com"
        assert env["HITPAW_API_KEY"] == "real-hitpaw-key"
        assert env["HITPAW_MAX_RPS"] == "3.5"
        assert env["PICWISH_BASE_URL"] == "http://sandbox:8080"  # untouched
    assert "HITPAW_API_KEY" not in (services["sandbox"].get("environment") or {})


def test_workers_can_be_scaled(services):
    for name in WORKER_SERVICES:
        assert "container_name" not in services[name], f"{name} cannot be scaled"
        assert not services[name].get("ports"), f"{name}: host ports clash when scaled"


def test_worker_queues_are_the_projects_and_store_has_its_own_service(services):
    worker_queues = queues_of(services["worker"]["command"])
    assert set(worker_queues) == set(ALL_QUEUES)
    assert queues_of(services["store-worker"]["command"]) == [STORE_QUEUE]


def test_beat_runs_exactly_once(services):
    beat = services["beat"]
    assert beat.get("deploy", {}).get("replicas", 1) == 1
    assert "scale" not in beat
    assert beat["command"] == ["beat"]
    others = [n for n, s in app_services(services).items() if s["command"][0] == "beat"]
    assert others == ["beat"]


def test_workers_stop_after_their_soft_shutdown(services):
    default_timeout_s = Settings.model_fields["worker_soft_shutdown_timeout_s"].default
    for name in WORKER_SERVICES:
        svc = services[name]
        timeout_s = float(svc["environment"]["WORKER_SOFT_SHUTDOWN_TIMEOUT_S"])
        assert timeout_s == default_timeout_s
        assert duration_s(svc["stop_grace_period"]) > timeout_s
        assert svc["stop_signal"] == "SIGTERM"
        # Without the remap, SIGTERM is Celery's unbounded warm shutdown, not the soft one.
        assert svc["environment"]["REMAP_SIGTERM"] == "SIGQUIT"


def test_redis_persists_to_a_named_volume_and_never_evicts(tmp_path):
    config = compose_config(tmp_path)
    redis_svc = config["services"]["redis"]
    command = " ".join(redis_svc["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    volume = redis_svc["volumes"][0]
    source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
    assert source in config["volumes"]
    assert "healthcheck" in redis_svc


def test_flower_is_authenticated_and_prometheus_is_optional(services):
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "test:test"
    assert services["prometheus"].get("profiles"), "prometheus should be opt-in"


def test_bucket_is_created_before_workers_start(services):
    assert "mc mb" in " ".join(services["minio-init"]["entrypoint"])
    for name in WORKER_SERVICES:
        condition = services[name]["depends_on"]["minio-init"]["condition"]
        assert condition == "service_completed_successfully"


def test_the_bucket_gets_the_lifecycle_backstop(services, k8s):
    init = services["minio-init"]
    script = " ".join(init["entrypoint"])
    assert "mc ilm rule add" in script and "--expire-days" in script
    assert init["environment"]["INPUTS_PREFIX"] == "enhanced/inputs/"
    assert services["minio"]["environment"]["MINIO_API_STALE_UPLOADS_EXPIRY"]
    job = k8s[("Job", "enhance-bucket-lifecycle")]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["lifecycle"]


def test_prometheus_scrapes_the_one_metrics_server_and_flower(services):
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    metrics_port = Settings.model_fields["metrics_port"].default
    # Job metrics are read from Redis: one server, or every figure is counted N times.
    servers = [n for n, s in app_services(services).items() if s["command"][0] == "metrics"]
    assert servers == ["metrics"]
    assert int(services["metrics"]["environment"]["METRICS_PORT"]) == metrics_port
    assert jobs["enhance-jobs"]["static_configs"][0]["targets"] == [f"metrics:{metrics_port}"]
    assert jobs["flower"]["metrics_path"] == "/metrics"
    assert jobs["flower"]["static_configs"][0]["targets"] == ["flower:5555"]
    assert "5555" in services["flower"]["command"]


# --- Dockerfile --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def instructions() -> list[dict]:
    dockerfile_parse = pytest.importorskip(
        "dockerfile_parse", reason="dockerfile-parse is not installed (pip install dockerfile-parse)"
    )
    parser = dockerfile_parse.DockerfileParser(path=str(DOCKERFILE))
    structure = [item for item in parser.structure if item["instruction"] != "COMMENT"]
    assert structure, "ops/Dockerfile did not parse"
    return structure


def _index(instructions: list[dict], instruction: str, contains: str = "") -> int:
    for i, item in enumerate(instructions):
        if item["instruction"] == instruction and contains in item["value"]:
            return i
    raise AssertionError(f"no {instruction} containing {contains!r}")


def test_dockerfile_base_and_unbuffered_output(instructions):
    assert re.match(r"python:3\.11-slim", instructions[0]["value"])
    env = " ".join(i["value"] for i in instructions if i["instruction"] == "ENV")
    assert re.search(r"\bPYTHONUNBUFFERED=1\b", env)


def test_dockerfile_runs_as_a_non_root_user(instructions):
    users = [i for i, item in enumerate(instructions) if item["instruction"] == "USER"]
    assert users, "no USER: the container runs as root"
    last_user = instructions[users[-1]]["value"].split(":")[0]
    assert last_user not in ("root", "0")
    last_run = max(i for i, item in enumerate(instructions) if item["instruction"] == "RUN")
    assert users[-1] > last_run, "a RUN after USER undoes nothing, but installs run as root"


def test_dockerfile_entrypoint_and_healthcheck(instructions):
    entrypoint = instructions[_index(instructions, "ENTRYPOINT")]["value"]
    assert yaml.safe_load(entrypoint) == ["enhance"]
    healthcheck = instructions[_index(instructions, "HEALTHCHECK")]["value"]
    assert "enhance" in healthcheck and "healthcheck" in healthcheck
    assert not healthcheck.strip().upper().startswith("NONE")


def test_dockerfile_installs_dependencies_before_copying_the_source(instructions):
    copies = [item["value"].split() for item in instructions if item["instruction"] == "COPY"]
    assert copies[0][:-1] == ["pyproject.toml"], "the first COPY must bring pyproject.toml only"
    deps = _index(instructions, "RUN", "pip install -r")
    source = _index(instructions, "COPY", ". ")
    project = _index(instructions, "RUN", "pip install --no-deps")
    assert _index(instructions, "COPY", "pyproject.toml") < deps < source < project


def test_dockerfile_dependency_list_is_the_projects(instructions, tmp_path):
    run = instructions[_index(instructions, "RUN", "tomllib")]["value"]
    program = shlex.split(run.split(" > ")[0])
    assert program[:2] == ["python", "-c"]
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    out = subprocess.run([sys.executable, "-c", program[2]], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert out.splitlines() == expected


def test_dockerfile_bakes_in_no_secret(instructions):
    for item in instructions:
        if item["instruction"] in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", item["value"]) or [item["value"]]
            for name in names:
                assert not any(w in name.upper() for w in SECRET_WORDS), name


def test_dockerignore_keeps_local_state_and_secrets_out():
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", ".env"} <= ignored


# --- .env.example ------------------------------------------------------------------------

_ENV_LINE = re.compile(r"^#?([A-Z][A-Z0-9_]+)=(.*)$")


def env_example() -> dict[str, str]:
    """``NAME=value`` and ``#NAME=value`` lines; prose comments start with ``# ``."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = _ENV_LINE.match(line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def test_env_example_names_every_setting():
    missing = SETTINGS_NAMES - set(env_example())
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_env_example_shows_the_settings_defaults():
    example = env_example()
    for field, info in Settings.model_fields.items():
        value = example[field.upper()]
        if info.default is None:
            assert value == "", f"{field.upper()} has no default; leave it empty"
            continue
        parsed = Settings(**{field: value})
        assert getattr(parsed, field) == info.default, f"{field.upper()}={value}"


def test_env_example_sets_no_secret():
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = _ENV_LINE.match(line)
        if match and any(word in match.group(1) for word in SECRET_WORDS):
            # A required secret is shipped uncommented but empty, for the user to fill in.
            assert line.startswith("#") or not match.group(2), f"secret value shipped: {line}"


# --- Kubernetes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict]:
    """Every object in ops/k8s, by (kind, name)."""
    objects = {}
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc and "kind" in doc, f"{path.name}: empty or kind-less document"
            name = doc.get("metadata", {}).get("name", path.stem)
            objects[(doc["kind"], name)] = doc
    return objects


def deployments(k8s: dict) -> dict[str, dict]:
    return {name: doc for (kind, name), doc in k8s.items() if kind == "Deployment"}


def container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_k8s_beat_is_single_and_recreated(k8s):
    beat = deployments(k8s)["enhance-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    scaled = {doc["spec"]["scaleTargetRef"]["name"] for (kind, _), doc in k8s.items()
              if kind in ("ScaledObject", "HorizontalPodAutoscaler")}
    assert "enhance-beat" not in scaled


def test_k8s_workers_cover_every_queue_and_stop_gracefully(k8s):
    config = k8s[("ConfigMap", "enhance-config")]["data"]
    timeout_s = float(config["WORKER_SOFT_SHUTDOWN_TIMEOUT_S"])
    seen: set[str] = set()
    for name in ("enhance-worker", "enhance-store-worker"):
        pod = deployments(k8s)[name]["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > timeout_s
        env = {e["name"]: e.get("value") for e in container(deployments(k8s)[name])["env"]}
        assert env["REMAP_SIGTERM"] == "SIGQUIT"
        queues = queues_of(container(deployments(k8s)[name])["args"])
        assert set(queues) <= set(ALL_QUEUES)
        seen.update(queues)
    assert seen == set(ALL_QUEUES)


def test_k8s_config_names_only_real_settings(k8s):
    config = k8s[("ConfigMap", "enhance-config")]["data"]
    secret = k8s[("Secret", "enhance-secrets")]["stringData"]
    unknown = (set(config) | set(secret)) - SETTINGS_NAMES - NON_SETTINGS_ENV
    assert not unknown, sorted(unknown)
    Settings(**{k.lower(): v for k, v in config.items() if k in SETTINGS_NAMES})


def test_keda_scales_existing_workers_on_real_queue_lists(k8s):
    scaled_objects = [doc for (kind, _), doc in k8s.items() if kind == "ScaledObject"]
    assert scaled_objects
    for doc in scaled_objects:
        assert doc["spec"]["scaleTargetRef"]["name"] in deployments(k8s)
        assert doc["spec"]["minReplicaCount"] >= 1
        for trigger in doc["spec"]["triggers"]:
            assert trigger["type"] == "redis"
            assert trigger["metadata"]["listName"] in ALL_QUEUES


def test_keda_triggers_every_queue_more_workers_drain_on_a_deployment_taking_it(k8s):
    # Admission runs and the maintenance tasks are a few messages at most, whatever the load.
    triggered = set()
    for (kind, _), doc in k8s.items():
        if kind != "ScaledObject":
            continue
        target = deployments(k8s)[doc["spec"]["scaleTargetRef"]["name"]]
        lists = {t["metadata"]["listName"] for t in doc["spec"]["triggers"]}
        assert lists <= set(queues_of(container(target)["args"]))
        triggered |= lists
    assert triggered == set(ALL_QUEUES) - {ADMIT_QUEUE, MAINTENANCE_QUEUE}


def test_kustomization_lists_every_manifest(k8s):
    kustomization = k8s[("Kustomization", "kustomization")]
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_workers_and_beat_are_restarted_whatever_their_exit_status(services, k8s):
    # A worker that gives up on a lost broker exits non-zero; one that exits 0 is gone too.
    for name in (*WORKER_SERVICES, "beat"):
        assert services[name]["restart"] == "always", name
    for name in ("enhance-worker", "enhance-store-worker", "enhance-beat"):
        assert deployments(k8s)[name]["spec"]["template"]["spec"]["restartPolicy"] == "Always"


def test_a_separate_job_store_redis_fsyncs_every_write():
    # Read as written: the service is behind a profile, the deployment's choice.
    service = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["jobstore-redis"]
    command = " ".join(service["command"])
    assert "--appendonly yes" in command and "--appendfsync always" in command
    assert service["profiles"] == ["jobstore"]


def egress_allows(policy: dict, address: str, port: int) -> bool:
    """Whether ``policy`` lets a pod connect to ``address``:``port`` over TCP by an ipBlock
    (the rules that speak of addresses outside the cluster's pods)."""
    ip = ipaddress.ip_address(address)
    for rule in policy["spec"]["egress"]:
        ports = {p["port"] for p in rule.get("ports", []) if p.get("protocol", "TCP") == "TCP"}
        if rule.get("ports") and port not in ports:
            continue
        for peer in rule.get("to", []):
            block = peer.get("ipBlock")
            if block is None or ip.version != ipaddress.ip_network(block["cidr"]).version:
                continue
            if ip in ipaddress.ip_network(block["cidr"]) and not any(
                    ip in ipaddress.ip_network(cidr) for cidr in block.get("except", [])):
                return True
    return False


def test_k8s_egress_keeps_every_pod_off_metadata_and_private_web_ports(k8s):
    policy = k8s[("NetworkPolicy", "enhance-egress")]
    assert policy["spec"]["policyTypes"] == ["Egress"]
    selected = policy["spec"]["podSelector"]["matchLabels"]
    templates = [doc["spec"]["template"] for (kind, _), doc in k8s.items()
                 if kind in ("Deployment", "Job")]
    assert templates and all(selected.items() <= t["metadata"]["labels"].items()
                             for t in templates)
    for address, port in [("169.254.169.254", 80), ("10.0.0.5", 80), ("172.20.1.1", 443),
                          ("192.168.1.1", 8080), ("127.0.0.1", 6379), ("100.64.0.1", 80),
                          ("fd00:ec2::254", 80), ("fe80::1", 443), ("::1", 6379),
                          ("::ffff:10.0.0.1", 443)]:
        assert not egress_allows(policy, address, port), (address, port)
    for address, port in [("10.0.0.5", 6379), ("172.20.1.1", 26379), ("192.168.1.1", 5672),
                          ("93.184.216.34", 443), ("52.216.0.1", 443), ("8.8.8.8", 8080),
                          ("2606:4700::1", 443)]:
        assert egress_allows(policy, address, port), (address, port)
