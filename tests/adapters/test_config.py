"""Worker configuration: choices validated with the key named, secrets only from the environment or a secrets file."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

import adapters.config
from adapters.config import SECRET_VARIABLES, WorkerConfig, build_adapters, load_config, load_secrets, load_toml
from adapters.local_metrics import LocalMetrics
from adapters.protocols import AdapterConfigError
from adapters.warehouse.metrics import WarehouseMetrics
from adapters.warehouse.vendors import CLIENTS
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


class FakeEngine:
    """Stands in for the chDB and Spark engines (adapters/warehouse/chdb_engine.py and spark_engine.py, written on
    another branch): records how the config built it and what it was sent."""

    name = dialect = "clickhouse"
    fail: Exception | None = None

    def __init__(self, path: Path | None = None, master: str = "", warehouse_dir: Path | None = None) -> None:
        self.path, self.master, self.warehouse_dir = path, master, warehouse_dir
        self.sent: list[str] = []
        self.closed = False

    @classmethod
    def connect(cls, master: str, warehouse_dir: Path | None = None) -> FakeEngine:
        return cls(master=master, warehouse_dir=warehouse_dir)

    def query(self, sql: str) -> list[dict[str, Any]]:
        self.sent.append(sql)
        if self.fail is not None:
            raise self.fail
        return [{"ok": 1}]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def engine_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chDB and Spark engine modules, replaced by FakeEngine (their real ones are tested on their branch)."""
    for module, attribute in (("chdb_engine", "ChdbEngine"), ("spark_engine", "SparkEngine")):
        fake = types.ModuleType(f"adapters.warehouse.{module}")
        setattr(fake, attribute, FakeEngine)
        monkeypatch.setitem(sys.modules, f"adapters.warehouse.{module}", fake)


def _warehouse_config(tmp_path: Path, text: str) -> WorkerConfig:
    file = tmp_path / "abrollout.toml"
    file.write_text(text)
    return load_config(str(file))


async def test_a_warehouse_is_built_by_name_with_its_catalog_and_closed_with_the_worker(
        tmp_path: Path, engine_modules: None) -> None:
    config = _warehouse_config(tmp_path, f'[adapters]\nmetrics = "clickhouse"\n[warehouse]\nmetrics = '
                               f'"{ROOT / "examples" / "metrics.yaml"}"\nincremental = false\nrollup_prefix = '
                               '"analytics.abr_"\n[warehouse.clickhouse]\npath = "/srv/chdb"\n')
    async with AsyncExitStack() as stack:
        built = await build_adapters(config, tmp_path / "data", {}, stack)
        metrics = built.metrics
        assert isinstance(metrics, WarehouseMetrics) and isinstance(metrics.engine, FakeEngine)
        engine = metrics.engine
        assert engine.path == Path("/srv/chdb") and engine.sent == ["SELECT 1 AS ok"] and not engine.closed
        assert "refund_rate" in metrics.catalog.metrics and metrics.catalog.labels is None
        assert (metrics.incremental, metrics.prefix) == (False, "analytics.abr_")
    assert engine.closed
    assert not (tmp_path / "data" / "metrics.duckdb").exists()


async def test_the_embedded_store_reads_the_configured_metrics_file(tmp_path: Path) -> None:
    config = _warehouse_config(tmp_path, f'[warehouse]\nmetrics = "{ROOT / "examples" / "metrics.yaml"}"\n')
    async with AsyncExitStack() as stack:
        metrics = (await build_adapters(config, tmp_path / "data", {}, stack)).metrics
        assert isinstance(metrics, LocalMetrics)
        assert "refund_rate" in metrics.warehouse.catalog.metrics and metrics.warehouse.catalog.labels is None
        metrics.close()


async def test_spark_gets_its_master_and_warehouse_dir_and_chdb_a_default_path(
        tmp_path: Path, engine_modules: None) -> None:
    spark = _warehouse_config(tmp_path, '[adapters]\nmetrics = "spark"\n[warehouse.spark]\nmaster = '
                              '"sc://127.0.0.1:15002"\nwarehouse_dir = "/srv/spark"\n')
    chdb = _warehouse_config(tmp_path, '[adapters]\nmetrics = "clickhouse"\n')
    async with AsyncExitStack() as stack:
        on_spark = (await build_adapters(spark, tmp_path, {}, stack)).metrics
        on_chdb = (await build_adapters(chdb, tmp_path, {}, stack)).metrics
    assert isinstance(on_spark, WarehouseMetrics) and isinstance(on_chdb, WarehouseMetrics)
    assert isinstance(on_spark.engine, FakeEngine) and isinstance(on_chdb.engine, FakeEngine)
    assert (on_spark.engine.master, on_spark.engine.warehouse_dir) == ("sc://127.0.0.1:15002", Path("/srv/spark"))
    assert on_chdb.engine.path == tmp_path / "chdb" and on_chdb.catalog.labels is not None  # the built-in catalog


async def test_a_warehouse_failing_its_start_up_check_is_named_without_its_message(
        tmp_path: Path, engine_modules: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FakeEngine, "fail", RuntimeError("password=sekret rejected"))
    config = _warehouse_config(tmp_path, '[adapters]\nmetrics = "clickhouse"\n')
    async with AsyncExitStack() as stack:
        with pytest.raises(AdapterConfigError, match=r"metrics = clickhouse: .*start-up check: RuntimeError") as raised:
            await build_adapters(config, tmp_path, {}, stack)
    assert "sekret" not in str(raised.value)


@pytest.mark.parametrize(("text", "message"), [
    ('[adapters]\nmetrics = "trino"\n', r"metrics = trino needs a \[warehouse.trino\] section"),
    ('[adapters]\nmetrics = "redshift"\n[warehouse.redshift]\nhost = "h"\ndatabase = "d"\nuser = "u"\n',
     "ABROLLOUT_REDSHIFT_PASSWORD"),
    ('[adapters]\nmetrics = "snowflake"\n[warehouse.snowflake]\naccount = "a"\nuser = "u"\n',
     r"metrics = snowflake \(without ABROLLOUT_SNOWFLAKE_PRIVATE_KEY\) needs ABROLLOUT_SNOWFLAKE_PASSWORD"),
    ('[adapters]\nmetrics = "bigquery"\n[warehouse.bigquery]\nproject = "p"\ndataset = "d"\n',
     r"google-cloud-bigquery client, which is not installed: pip install 'abrollout\[bigquery\]'"),
])
async def test_a_warehouse_missing_a_setting_a_secret_or_its_client_stops_the_worker_naming_it(
        tmp_path: Path, text: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for module, _ in CLIENTS.values():
        monkeypatch.setitem(sys.modules, module, None)  # no vendor client, whatever this venv has
    async with AsyncExitStack() as stack:
        with pytest.raises(AdapterConfigError, match=message):
            await build_adapters(_warehouse_config(tmp_path, text), tmp_path, {}, stack)


def test_warehouse_settings_are_checked_and_hold_no_secret(tmp_path: Path) -> None:
    for text, key in [('[warehouse.snowflake]\naccount = "a"\nuser = "u"\npassword = "p"\n',
                       "warehouse.snowflake.password"),
                      ('[warehouse.redshift]\nhost = "h"\ndatabase = "d"\nuser = "u"\npassword = "p"\n',
                       "warehouse.redshift.password"),
                      ('[warehouse.spark]\nmaster = "yarn"\n', "warehouse.spark.master"),
                      ('[warehouse]\nrollup_prefix = "x; DROP TABLE y"\n', "warehouse.rollup_prefix"),
                      ('[warehouse.bigquery]\nproject = "p"\ndataset = "my-data"\n', "warehouse.bigquery.dataset"),
                      ('[warehouse.trino]\nhost = "h"\nuser = "u"\ncatalog = "c"\nschema = "s"\nhttp_scheme = "ftp"\n',
                       "warehouse.trino.http_scheme")]:
        with pytest.raises(AdapterConfigError, match=rf"\[{key}\]"):
            _warehouse_config(tmp_path, text)
    trino = _warehouse_config(tmp_path, '[warehouse.trino]\nhost = "h"\nuser = "u"\ncatalog = "c"\nschema = "s"\n')
    assert trino.warehouse.trino is not None and trino.warehouse.trino.schema_ == "s"


async def test_redshift_connects_with_its_settings_and_the_password_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    connected: list[tuple[dict[str, Any], Connection]] = []

    class Connection:
        autocommit = False

        def cursor(self) -> Any:
            return types.SimpleNamespace(execute=lambda sql: None, fetchall=lambda: [(1,)], description=[("ok",)],
                                         close=lambda: None)

        def close(self) -> None: ...

    def connect(**settings: Any) -> Connection:
        connected.append((settings, Connection()))
        return connected[-1][1]

    monkeypatch.setitem(sys.modules, "redshift_connector", types.SimpleNamespace(connect=connect))
    config = _warehouse_config(tmp_path, '[adapters]\nmetrics = "redshift"\n[warehouse.redshift]\nhost = "rs.internal"'
                               '\ndatabase = "analytics"\nuser = "abrollout"\n')
    async with AsyncExitStack() as stack:
        built = await build_adapters(config, tmp_path, {"redshift_password": "pw"}, stack)
    [(settings, connection)] = connected
    assert settings == {"host": "rs.internal", "port": 5439, "database": "analytics", "user": "abrollout",
                        "password": "pw"}
    assert connection.autocommit  # each statement of a refresh commits on its own
    assert isinstance(built.metrics, WarehouseMetrics) and built.metrics.engine.dialect == "redshift"
