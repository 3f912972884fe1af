"""The compose stack people run on their own machines. The real compose tool validates the file where it can be
had; the structure (services, pinned images, no literal secrets, the worker's build and settings, an image that
holds every package) is checked from the files themselves everywhere, so it never skips."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.system_tools import system_tool
from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
HOW = ("apt-get install docker-compose (Debian) or install the compose plugin, "
       "then run pytest tests/deploy/test_docker_compose.py")
TIMEOUT_SECONDS = 60
CODE = tuple(pattern.rstrip("*") for pattern in
             tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"])
"""The packages the image installs: every setting the compose file gives must be read by one of them."""
SECRET_NAME = re.compile(r"PASSWORD|PWD|TOKEN|SECRET|API_KEY|CREDENTIAL", re.IGNORECASE)
HOST_REFERENCE = re.compile(r"\$\{\w+(:?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> list[str]:
    """`docker compose` when the plugin works (the modern tool), else docker-compose, installed if it can be."""
    docker = shutil.which("docker")
    if docker is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            plugin = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=TIMEOUT_SECONDS,
                                    check=False)
            if plugin.returncode == 0:
                return [docker, "compose"]
    return [system_tool("docker-compose", "docker-compose", HOW)]


def _config(compose: list[str], tmp_path: Path, password: str | None) -> subprocess.CompletedProcess[str]:
    """`compose config -q` with only the given password: an empty env file keeps a developer's .env out of it."""
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    env = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    if password is not None:
        env["POSTGRES_PASSWORD"] = password
    return subprocess.run([*compose, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "-q"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)


def test_compose_file_validates(compose: list[str], tmp_path: Path) -> None:
    done = _config(compose, tmp_path, password="only-for-this-test")
    assert done.returncode == 0, done.stderr


def test_compose_refuses_to_run_without_a_database_password(compose: list[str], tmp_path: Path) -> None:
    done = _config(compose, tmp_path, password=None)
    assert done.returncode != 0
    assert "POSTGRES_PASSWORD" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def _env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, whichever of compose's two forms it is written in."""
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _waits_for(service: dict[str, Any], other: str, condition: str) -> bool:
    depends = service.get("depends_on", {})
    return isinstance(depends, dict) and depends.get(other, {}).get("condition") == condition


def _publishes(service: dict[str, Any], port: int) -> bool:
    return any(str(mapping).endswith(f":{port}:{port}") for mapping in service.get("ports", []))


def _named_volume(service: dict[str, Any], stack: dict[str, Any], target: str) -> str:
    """The named (declared, so it outlives the container) volume mounted at `target`."""
    mounts = [str(mount).split(":") for mount in service.get("volumes", [])]
    sources = [parts[0] for parts in mounts if parts[1:2] == [target]]
    assert len(sources) == 1 and sources[0] in stack.get("volumes", {}), sources
    return sources[0]


def test_the_stack_has_every_service(stack: dict[str, Any]) -> None:
    assert {"postgresql", "temporal", "temporal-ui", "create-search-attributes", "worker"} <= set(stack["services"])


def test_images_are_pinned(stack: dict[str, Any]) -> None:
    for name, service in stack["services"].items():
        if "build" in service:
            continue
        repository, _, tag = service["image"].rpartition(":")
        assert repository and tag and tag != "latest", name


def test_postgres_keeps_its_data_and_reports_health(stack: dict[str, Any]) -> None:
    postgres = stack["services"]["postgresql"]
    assert postgres["image"] == "postgres:16"
    _named_volume(postgres, stack, "/var/lib/postgresql/data")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_temporal_runs_on_postgres(stack: dict[str, Any]) -> None:
    temporal = stack["services"]["temporal"]
    assert temporal["image"].startswith("temporalio/auto-setup:")
    env = _env(temporal)
    assert env["DB"] == "postgres12" and env["POSTGRES_SEEDS"] == "postgresql"
    assert _waits_for(temporal, "postgresql", "service_healthy")
    assert _publishes(temporal, 7233)
    assert "healthcheck" in temporal  # the UI, the search attributes and the worker wait for it


def test_ui_talks_to_temporal(stack: dict[str, Any]) -> None:
    ui = stack["services"]["temporal-ui"]
    assert ui["image"].startswith("temporalio/ui:")
    assert _env(ui)["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert _publishes(ui, 8080)


def test_search_attributes_step_registers_what_the_workflows_set(stack: dict[str, Any]) -> None:
    step = stack["services"]["create-search-attributes"]
    assert step["image"].startswith("temporalio/admin-tools:")
    assert _waits_for(step, "temporal", "service_healthy")
    mounts = dict(str(mount).split(":")[:2] for mount in step["volumes"])
    script = next(host for host, container in mounts.items() if container == step["entrypoint"][-1])
    text = (ROOT / script).read_text()
    assert "--type Keyword" in text
    for key in SEARCH_ATTRIBUTES:
        assert key.name in text


def test_worker_is_built_here_and_configured(stack: dict[str, Any]) -> None:
    worker = stack["services"]["worker"]
    assert worker["build"] in (".", {"context": "."})
    assert worker["command"] == ["python", "worker.py"]
    env = _env(worker)
    assert {k: env.get(k) for k in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "ABROLLOUT_TASK_QUEUE",
                                    "ABROLLOUT_DATA_DIR")} == {
        "TEMPORAL_ADDRESS": "temporal:7233", "TEMPORAL_NAMESPACE": "default", "ABROLLOUT_TASK_QUEUE": "abrollout",
        "ABROLLOUT_DATA_DIR": "/data"}
    assert env["ABROLLOUT_METRICS"] == "0.0.0.0:9464"  # all interfaces: the container's loopback is unreachable
    assert _publishes(worker, 9464)
    _named_volume(worker, stack, "/data")
    assert _waits_for(worker, "temporal", "service_healthy")
    assert _waits_for(worker, "create-search-attributes", "service_completed_successfully")


def test_every_worker_setting_is_read_by_the_code(stack: dict[str, Any]) -> None:
    """A misspelt or stale variable would be ignored in silence; each one must appear in the code that runs."""
    code = "\n".join(path.read_text() for package in CODE for path in (ROOT / package).rglob("*.py"))
    for name in _env(stack["services"]["worker"]):
        assert f'"{name}"' in code, name


def test_secrets_only_come_from_the_host(stack: dict[str, Any]) -> None:
    for name, service in stack["services"].items():
        for key, value in _env(service).items():
            if SECRET_NAME.search(key):
                assert HOST_REFERENCE.fullmatch(value), f"{name}: {key} holds a literal; use ${{{key}}}"


def test_image_holds_every_package_and_runs_the_worker_unprivileged() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    assert "FROM python:3.11-slim" in lines
    copied = {source.rstrip("/") for line in lines if line.startswith("COPY ") for source in line.split()[1:-1]}
    for source in copied:
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"
    assert set(CODE) <= copied
    assert {"pyproject.toml", "README.md", "worker.py", "starter.py"} <= copied  # README: the build reads it
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert [line for line in lines if line.startswith("CMD ")][-1] == 'CMD ["python", "worker.py"]'
    ignored = set((ROOT / ".dockerignore").read_text().splitlines())
    assert {".git", ".venv", ".abrollout", ".env"} <= ignored
