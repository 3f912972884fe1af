"""Worker configuration: choices validated with the key named, secrets only from the environment or a secrets file."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

import adapters.config
from adapters.config import SECRET_VARIABLES, WorkerConfig, build_adapters, load_config, load_secrets, load_toml
from adapters.protocols import AdapterConfigError
from devserver import free_port, start
from tests.cli.test_validate import ROOT
from tests.support.faulty_worker import Faults, with_faults


def test_no_file_means_every_adapter_embedded() -> None:
    config = load_config(None)
    assert config.all_local


def test_unknown_keys_and_choices_are_refused_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[adapters]\nflags = "launchdarkly"\n')
    with pytest.raises(AdapterConfigError, match=r"\[adapters.flags\]"):
        load_config(str(bad))
    bad.write_text('[adapters]\nflag = "unleash"\n')
    with pytest.raises(AdapterConfigError, match=r"\[adapters.flag\]"):
        load_config(str(bad))
    with pytest.raises(AdapterConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.toml"))


def test_a_faults_table_in_the_worker_config_is_refused_like_any_unknown_key(tmp_path: Path) -> None:
    """Test faults live in the test worker's own faults file (tests/support/faulty_worker.py), never here."""
    bad = tmp_path / "abrollout.toml"
    bad.write_text('[faults]\nkill = "allocate-0:after"\n')
    with pytest.raises(AdapterConfigError, match=r"\[faults\] Extra inputs are not permitted"):
        load_config(str(bad))


def test_fault_tables_are_checked_like_every_other_setting(tmp_path: Path) -> None:
    bad = tmp_path / "faults.toml"
    bad.write_text('[flags]\nerror = "teapot"\n')
    with pytest.raises(AdapterConfigError, match=r"\[flags.error\]"):
        load_toml(str(bad), Faults, "--faults")
    bad.write_text('[metrics]\nhand_edit_after = ["allocate-0"]\n')  # only flags can be edited by hand
    with pytest.raises(AdapterConfigError, match=r"\[metrics.hand_edit_after\]"):
        load_toml(str(bad), Faults, "--faults")
    bad.write_text('kill = "allocate-0"\n')
    with pytest.raises(AdapterConfigError, match=r"\[kill\] .*write <step>:before or <step>:after"):
        load_toml(str(bad), Faults, "--faults")


async def test_misbehaving_adapters_say_so_in_their_names(tmp_path: Path) -> None:
    faults = Faults.model_validate({"flags": {"fail_calls": [1]}, "metrics": {"empty": True}})
    async with AsyncExitStack() as stack:
        adapters = with_faults(await build_adapters(WorkerConfig(), tmp_path, {}, stack), faults)
    assert adapters.flags.name == adapters.metrics.name == "local (misbehaving: test faults)"
    assert adapters.registry.name == "local"


def test_secrets_come_from_the_environment_over_a_secrets_file(tmp_path: Path) -> None:
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text('unleash_token = "from-file"\ngithub_token = "gh-file"\n')
    env = {"ABROLLOUT_SECRETS_FILE": str(secrets_file), "UNLEASH_TOKEN": "from-env"}
    assert load_secrets(env) == {"unleash_token": "from-env", "github_token": "gh-file"}
    secrets_file.write_text('password = "x"\n')
    with pytest.raises(AdapterConfigError, match="unknown keys"):
        load_secrets(env)


async def test_a_missing_secret_fails_at_start_naming_the_variable(tmp_path: Path) -> None:
    config = WorkerConfig.model_validate({"adapters": {"flags": "unleash"}})
    async with AsyncExitStack() as stack:
        with pytest.raises(AdapterConfigError, match="UNLEASH_TOKEN"):
            await build_adapters(config, tmp_path, {}, stack)


async def test_the_default_build_is_the_embedded_stack(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        adapters = await build_adapters(WorkerConfig(), tmp_path, {}, stack)
    assert {adapters.flags.name, adapters.registry.name, adapters.metrics.name, adapters.tickets.name} == {"local"}
    assert adapters.accelerated_clock_allowed and adapters.tsdb is None
    assert {p.name for p in tmp_path.iterdir() if p.suffix in (".sqlite", ".duckdb")} == {
        "flags.sqlite", "metrics.duckdb", "registry.sqlite", "tickets.sqlite"}


async def test_outside_systems_leave_no_local_store_beside_them(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Unleash, PostgreSQL, Prometheus and a webhook chosen: no SQLite or DuckDB file is opened. Built without
    connecting (the start-up check, which needs the live servers, is skipped)."""

    async def unchecked(stack: AsyncExitStack, adapter: Any, create_schema: bool = False) -> Any:
        return adapter

    monkeypatch.setattr(adapters.config, "_checked", unchecked)
    config = WorkerConfig.model_validate({
        "adapters": {"flags": "unleash", "metrics": "postgres", "registry": "postgres", "tickets": "webhook",
                     "guardrails": "prometheus"},
        "webhook": {"url": f"http://127.0.0.1:{free_port()}/tickets"},
        "prometheus": {"url": f"http://127.0.0.1:{free_port()}"}})
    secrets = {"unleash_token": "*:*.token", "postgres_dsn": f"postgresql://abrollout@127.0.0.1:{free_port()}/db"}
    async with AsyncExitStack() as stack:
        built = await build_adapters(config, tmp_path / "data", secrets, stack)
    assert (built.flags.name, built.registry.name, built.metrics.name, built.tickets.name) == (
        "unleash", "postgres", "postgres+prometheus", "webhook")
    assert list((tmp_path / "data").iterdir()) == []


@pytest.mark.parametrize(("choice", "key", "token"), [
    ({"adapters": {"flags": "unleash"}}, "unleash_token", "*:*.tökén"),
    ({"adapters": {"tickets": "github"}, "github": {"repo": "acme/shop"}}, "github_token", "ghp_tökén"),
    ({"adapters": {"tickets": "github"}, "github": {"repo": "acme/shop"}}, "github_token", "ghp_token\n"),
])
async def test_a_token_a_header_cannot_carry_fails_at_start_naming_the_variable(
        tmp_path: Path, choice: dict[str, object], key: str, token: str) -> None:
    config = WorkerConfig.model_validate(choice)
    async with AsyncExitStack() as stack:
        with pytest.raises(AdapterConfigError, match=rf"{SECRET_VARIABLES[key]} .*not printable ASCII") as raised:
            await build_adapters(config, tmp_path, {key: token}, stack)
    assert token.strip() not in str(raised.value) and "\n" not in str(raised.value)


def _worker_stopping_at_start(tmp_path: Path, config_text: str, token: str) -> subprocess.CompletedProcess[str]:
    """Run worker.py against a fresh dev server with `config_text` and UNLEASH_TOKEN=`token`; it must stop."""
    config = tmp_path / "abrollout.toml"
    config.write_text(config_text)
    server = start(tmp_path / "t.sqlite", free_port(), None)
    try:
        env = {**os.environ, "TEMPORAL_ADDRESS": server.address, "ABROLLOUT_CONFIG": str(config),
               "UNLEASH_TOKEN": token, "ABROLLOUT_DATA_DIR": str(tmp_path / "data"), "ABROLLOUT_METRICS": "off"}
        return subprocess.run([sys.executable, str(ROOT / "worker.py")], env=env, capture_output=True, text=True,
                              timeout=60)
    finally:
        server.stop()


def test_a_worker_with_an_unreachable_adapter_stops_at_start_with_one_clear_line(tmp_path: Path) -> None:
    result = _worker_stopping_at_start(
        tmp_path, f'[adapters]\nflags = "unleash"\n[unleash]\nurl = "http://127.0.0.1:{free_port()}"\n',
        "*:*.sekret-token-value")
    assert result.returncode == 1
    assert "adapter configuration" in result.stderr and "unleash" in result.stderr.lower()
    assert "sekret-token-value" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_worker_with_a_non_ascii_token_stops_at_start_with_one_line_naming_it(tmp_path: Path) -> None:
    result = _worker_stopping_at_start(tmp_path, '[adapters]\nflags = "unleash"\n', "*:*.tökén")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "tökén" not in result.stderr + result.stdout
    [line] = result.stderr.splitlines()
    assert "adapter configuration" in line and "UNLEASH_TOKEN" in line and "not printable ASCII" in line
