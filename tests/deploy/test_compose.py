"""docker-compose.yaml, the Dockerfile and .env.example checked against the deployment contract, no Docker."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"

AIRFLOW_SERVICES = {
    "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker",
    "airflow-worker-warehouse", "airflow-init", "airflow-cli", "flower",
}
ALL_SERVICES = AIRFLOW_SERVICES | {"postgres", "redis", "openrouter-emulator"}
ONE_SHOT_SERVICES = {"airflow-init", "airflow-cli"}
PROFILES = {"flower": ["flower"], "openrouter-emulator": ["demo"], "airflow-cli": ["debug"]}
WORKER_QUEUES = {"airflow-worker": "default", "airflow-worker-warehouse": "warehouse"}

WAREHOUSE_MOUNT = "/opt/airflow/data"
LANDING_MOUNT = "/opt/airflow/data/landing"
EMULATOR_PORT = "8090"

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?[-?](?P<default>[^}]*))?\}")


def interpolate(text: str) -> str:
    """Compose's `${NAME:-default}` interpolation with nothing set, so every default applies."""
    escaped = text.replace("$$", "\0")
    return _VARIABLE.sub(lambda match: match.group("default") or "", escaped).replace("\0", "$")


def compose_variables(text: str) -> set[str]:
    """Every variable compose interpolates (`$$NAME` is the container's, not compose's)."""
    return {match.group("name") for match in _VARIABLE.finditer(text.replace("$$", ""))}


def mounts(service: dict) -> dict[str, tuple[str, str]]:
    """Container path → (host path, mode) for a service's short-syntax volumes, defaults applied."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *mode = interpolate(volume).split(":")
        found[target] = (source, mode[0] if mode else "rw")
    return found


def command_words(service: dict) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else list(command)


def init_script(services: dict) -> str:
    """airflow-init's bash script as the container runs it."""
    return interpolate(services["airflow-init"]["command"][-1])


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text) -> dict:
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def test_services_are_upstreams_plus_the_warehouse_worker_and_the_emulator(services):
    assert set(services) == ALL_SERVICES


def test_optional_services_sit_behind_profiles(services):
    for name, service in services.items():
        assert service.get("profiles") == PROFILES.get(name), name


def test_every_long_running_service_has_a_healthcheck(services):
    for name, service in services.items():
        if name in ONE_SHOT_SERVICES:
            assert "healthcheck" not in service, name
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert {"interval", "retries"} <= set(check), name
        assert service.get("restart") == "always", name


def test_workers_ping_their_own_celery_node(services):
    for name in WORKER_QUEUES:
        check = " ".join(services[name]["healthcheck"]["test"])
        assert 'inspect ping -d "celery@$${HOSTNAME}"' in check, name
        assert services[name]["environment"]["DUMB_INIT_SETSID"] == "0", name


def test_airflow_services_share_one_image_and_run_as_airflow_uid(services):
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["build"] == ".", name
        assert service["image"] == services["airflow-apiserver"]["image"], name
        assert service["user"] == ("0:0" if name == "airflow-init" else "${AIRFLOW_UID:-50000}:0"), name
    assert services["openrouter-emulator"]["image"] == services["airflow-apiserver"]["image"]


def test_common_environment_runs_celery_on_postgres_and_redis(compose, services):
    common = compose["x-airflow-common"]["environment"]
    assert common["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert interpolate(common["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).startswith("postgresql+psycopg2://")
    assert "@postgres/" in common["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert interpolate(common["AIRFLOW__CELERY__RESULT_BACKEND"]).startswith("db+postgresql://")
    broker = common["AIRFLOW__CELERY__BROKER_URL"]
    assert broker.startswith("redis://") and "@redis:6379/" in broker
    assert common["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
    assert common["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "true"
    assert common["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    assert common["OPENROUTER_SPEND_HOME"] == WAREHOUSE_MOUNT
    # Task SDK workers reach the api-server by its service name and container port.
    container_port = services["airflow-apiserver"]["ports"][0].rsplit(":", 1)[1]
    assert common["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        f"http://airflow-apiserver:{container_port}/execution/")
    # Upstream's airflow-init installs nothing at start, whatever _PIP_ADDITIONAL_REQUIREMENTS says.
    allowed_overrides = {"airflow-init": {"_PIP_ADDITIONAL_REQUIREMENTS"}}
    for name in AIRFLOW_SERVICES:
        environment = services[name]["environment"]
        differing = {key for key, value in common.items() if environment.get(key) != value}
        assert differing <= allowed_overrides.get(name, set()), f"{name} overrides or lacks {differing}"


def test_secrets_come_only_from_the_environment(compose, services):
    common = compose["x-airflow-common"]["environment"]
    assert common["AIRFLOW__CORE__FERNET_KEY"].startswith("${FERNET_KEY")
    assert common["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${AIRFLOW__API_AUTH__JWT_SECRET")
    init = services["airflow-init"]["environment"]
    assert init["OPENROUTER_MANAGEMENT_KEY"] == "${OPENROUTER_MANAGEMENT_KEY:-}"
    assert init["_AIRFLOW_WWW_USER_PASSWORD"].startswith("${_AIRFLOW_WWW_USER_PASSWORD")
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")
    # Only airflow-init sees the key; the tasks read it from the openrouter_default connection.
    for name, service in services.items():
        if name != "airflow-init":
            assert "OPENROUTER_MANAGEMENT_KEY" not in service.get("environment", {}), name
    assert "env_file" not in compose["x-airflow-common"]


def test_airflow_services_wait_for_their_dependencies(services):
    healthy = {"condition": "service_healthy"}
    for name in AIRFLOW_SERVICES:
        depends_on = services[name]["depends_on"]
        assert depends_on["postgres"] == healthy and depends_on["redis"] == healthy, name
        if name in ONE_SHOT_SERVICES:
            assert "airflow-init" not in depends_on, name
        else:
            assert depends_on["airflow-init"] == {"condition": "service_completed_successfully"}, name
    for name in WORKER_QUEUES:
        assert services[name]["depends_on"]["airflow-apiserver"] == healthy, name


def test_only_the_warehouse_worker_and_init_mount_the_warehouse(services):
    writers = {name for name, service in services.items() if WAREHOUSE_MOUNT in mounts(service)}
    assert writers == {"airflow-worker-warehouse", "airflow-init"}
    for name in writers:
        assert mounts(services[name])[WAREHOUSE_MOUNT][1] == "rw", name
    for name, service in services.items():
        if name in writers:
            continue
        under_data = {target for target in mounts(service) if target.startswith(WAREHOUSE_MOUNT)}
        assert under_data == ({LANDING_MOUNT} if name == "airflow-worker" else set()), name


def test_default_workers_share_landing_with_the_warehouse_worker(services):
    warehouse_source = mounts(services["airflow-worker-warehouse"])[WAREHOUSE_MOUNT][0]
    landing_source = mounts(services["airflow-worker"])[LANDING_MOUNT][0]
    assert landing_source == f"{warehouse_source}/landing"


def test_every_airflow_service_mounts_the_project_code(services):
    for name in AIRFLOW_SERVICES:
        targets = set(mounts(services[name]))
        for folder in ("dags", "logs", "config", "plugins", "include", "sql"):
            assert f"/opt/airflow/{folder}" in targets, f"{name} lacks {folder}"


def test_workers_serve_the_queues_the_dag_routes_to(services):
    from airflow.configuration import conf
    from airflow.dag_processing.dagbag import DagBag

    worker_commands = {name: command_words(service) for name, service in services.items()
                       if command_words(service)[:2] == ["celery", "worker"]}
    served = {words[words.index("--queues") + 1]: name for name, words in worker_commands.items()}
    assert served == {queue: name for name, queue in WORKER_QUEUES.items()}
    warehouse_words = worker_commands["airflow-worker-warehouse"]
    assert warehouse_words[warehouse_words.index("--concurrency") + 1] == "1"
    assert services["airflow-worker-warehouse"]["hostname"] == "airflow-worker-warehouse"

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"), known_pools={"default_pool", "duckdb"})
    assert not bag.import_errors
    default_queue = conf.get("operators", "default_queue")
    for dag in bag.dags.values():
        for task in dag.tasks:
            expected = "warehouse" if task.pool == "duckdb" else default_queue
            where = f"{dag.dag_id}.{task.task_id}"
            assert task.queue == expected, f"{where}: pool {task.pool}, queue {task.queue}"
            assert task.queue in served, f"no worker serves queue {task.queue}"


def test_init_creates_the_pool_and_the_connection(services):
    script = init_script(services)
    assert re.search(r"pools set duckdb 1 ", script)
    assert "connections add openrouter_default --conn-type generic" in script
    assert script.index("set -euo pipefail") < script.index("pools set duckdb")
    environment = services["airflow-init"]["environment"]
    assert environment["_AIRFLOW_DB_MIGRATE"] == "true"
    assert environment["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert services["airflow-init"]["entrypoint"] == "/bin/bash"


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_init_script_is_valid_bash(services, tmp_path):
    script = tmp_path / "airflow-init.sh"
    script.write_text(init_script(services))
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_demo_emulator_is_reachable_by_the_workers(services):
    from openrouter_emulator.server import DEFAULT_MANAGEMENT_KEY

    emulator = services["openrouter-emulator"]
    words = command_words(emulator)
    assert words[:2] == ["openrouter-spend", "emulator"]
    assert words[words.index("--host") + 1] == "0.0.0.0"
    assert words[words.index("--port") + 1] == EMULATOR_PORT
    assert emulator["entrypoint"] == ["/usr/bin/dumb-init", "--"]
    assert f"localhost:{EMULATOR_PORT}/api/v1/" in " ".join(emulator["healthcheck"]["test"])
    init = services["airflow-init"]["environment"]
    assert init["OPENROUTER_DEMO_BASE_URL"] == f"http://openrouter-emulator:{EMULATOR_PORT}/api/v1"
    assert init["OPENROUTER_DEMO_MANAGEMENT_KEY"] == DEFAULT_MANAGEMENT_KEY


def test_env_example_documents_every_variable(compose_text):
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
    undocumented = compose_variables(compose_text) - documented
    assert not undocumented, f".env.example does not document {sorted(undocumented)}"


def test_env_example_holds_no_secret():
    values = dict(re.findall(r"^([A-Z_][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
    for name in ("OPENROUTER_MANAGEMENT_KEY", "FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"):
        assert values.get(name, "") == "", f"{name} must stay empty in .env.example"


def test_dockerfile_builds_the_locked_airflow_with_the_project():
    dockerfile = DOCKERFILE.read_text()
    lock = (REPO_ROOT / "requirements.txt").read_text()
    airflow_version = re.search(r"^apache-airflow==(\S+)$", lock, re.MULTILINE).group(1)
    python_version = re.search(r"--python-version (3\.\d+)", lock).group(1)
    # The image's Python must be the one the lock was compiled for, not the tag's default.
    base_image = f"apache/airflow:{airflow_version}-python{python_version}"
    assert re.search(rf"^FROM {re.escape(base_image)}$", dockerfile, re.MULTILINE), base_image
    assert "-r /opt/airflow/requirements.txt" in dockerfile
    for folder in ("dags", "include", "sql", "plugins"):
        assert re.search(rf"^COPY .*\b{folder} /opt/airflow/{folder}$", dockerfile, re.MULTILINE), folder
    assert "pip install --no-cache-dir --no-deps -e /opt/airflow" in dockerfile
    ignored = set(DOCKERIGNORE.read_text().split())
    assert {".env", ".venv", "data", ".git"} <= ignored


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="Debian's docker-compose is not installed (apt-get install docker-compose)")
def test_docker_compose_renders_the_file(tmp_path):
    # `config` only parses and validates: no Docker engine is needed.
    result = subprocess.run(
        ["docker-compose", "--project-directory", str(REPO_ROOT), "-f", str(COMPOSE_FILE),
         "--profile", "demo", "--profile", "flower", "--profile", "debug", "config", "--services"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == ALL_SERVICES
