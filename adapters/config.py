"""Which adapters a worker uses: one TOML file for the choices and settings, secrets only from the environment (or
a secrets file). Every adapter is checked at start-up, so a wrong URL or token fails the worker at once, not the
first experiment hours later. The file, key by key: docs/configuration.md#the-worker-config-file.
"""

from __future__ import annotations

import asyncio
import os
import tomllib
from collections.abc import Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from abrollout.warehouse.catalog import BUILT_IN, Catalog
from adapters.composite_metrics import CompositeMetrics
from adapters.local_dashboards import LocalDashboards
from adapters.local_flags import LocalFlags
from adapters.local_metrics import LocalMetrics
from adapters.local_registry import LocalRegistry
from adapters.local_tickets import LocalTickets
from adapters.protocols import AdapterConfigError, Adapters, FlagProvider, MetricsSource, Registry, TicketSystem
from adapters.warehouse.catalog_file import load_catalog
from adapters.warehouse.engine import Engine
from adapters.warehouse.metrics import WarehouseMetrics

SECRET_VARIABLES = {
    "unleash_token": "UNLEASH_TOKEN",
    "postgres_dsn": "ABROLLOUT_POSTGRES_DSN",
    "webhook_secret": "ABROLLOUT_WEBHOOK_SECRET",
    "github_token": "GITHUB_TOKEN",
    "snowflake_password": "ABROLLOUT_SNOWFLAKE_PASSWORD",
    "snowflake_private_key": "ABROLLOUT_SNOWFLAKE_PRIVATE_KEY",
    "trino_password": "ABROLLOUT_TRINO_PASSWORD",
    "redshift_password": "ABROLLOUT_REDSHIFT_PASSWORD",
}
HEADER_SECRETS = frozenset({"unleash_token", "github_token"})
"""Secrets sent as HTTP header values, which carry printable ASCII only (httpx refuses anything else mid-request)."""
Model = TypeVar("Model", bound=BaseModel)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


MetricsChoice = Literal["local", "postgres", "clickhouse", "spark", "bigquery", "snowflake", "trino", "redshift"]
WAREHOUSES: tuple[str, ...] = get_args(MetricsChoice)[2:]
"""The metrics choices answered by the warehouse generator through an engine (adapters/warehouse)."""


class Choices(Section):
    flags: Literal["local", "unleash"] = "local"
    metrics: MetricsChoice = "local"
    registry: Literal["local", "postgres"] = "local"
    tickets: Literal["local", "webhook", "github"] = "local"
    guardrails: Literal["none", "prometheus"] = "none"
    allow_simulation: bool = False


class UnleashSection(Section):
    url: str = "http://127.0.0.1:4242"
    project: str = "default"
    environment: str = "development"


class PostgresSection(Section):
    tables: dict[str, str] = Field(default_factory=dict,
                                   description="Table and column names (keys of adapters.postgres_metrics."
                                   "WarehouseTables; <table>_loaded_at = \"\" for a table without one); unknown "
                                   "keys and unsafe names are refused at start.")
    create_tables: bool = False
    rollup: bool = Field(default=False, description="Keep the warehouse generator's incremental rollup in "
                         "abrollout's own tables in this database (abrollout_rollup_*, created when missing) and "
                         "answer checks from it; needs loaded_at on the three metrics tables.")


class UrlSection(Section):
    url: str


class PrometheusSection(UrlSection):
    mirror_metrics: list[str] = Field(
        default_factory=list,
        description="Simulation only: metrics whose simulated per-arm means are pushed as abrollout_<metric>.")


class GitHubSection(Section):
    repo: str
    api_url: str = "https://api.github.com"


class SafetyNetSection(Section):
    """The sweep that returns abandoned experiments' flags to control (workflows/safety_net.py)."""

    every_minutes: float = Field(default=5, gt=0, le=24 * 60, description="How often the sweep runs.")
    stuck_after_minutes: float = Field(default=15, gt=0, le=7 * 24 * 60, description="How long a workflow task may "
                                       "keep failing before its experiment counts as stuck.")


class ClickHouseSection(Section):
    path: str | None = Field(default=None, description="chDB's data directory; none: <data dir>/chdb.")


class SparkSection(Section):
    master: str = Field(default="local[2]", pattern=r"^(local(\[(\d+|\*)\])?|spark://.+|sc://.+)$",
                        description='local[N] (in the worker), spark://host:7077 (a cluster) or sc://host:15002 '
                        '(Spark Connect).')
    warehouse_dir: str | None = Field(default=None, description="spark.sql.warehouse.dir; none: Spark's default.")


class BigQuerySection(Section):
    project: str
    dataset: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,1024}$")]
    location: str | None = None


class SnowflakeSection(Section):
    account: str
    user: str
    warehouse: str | None = None
    database: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    role: str | None = None


class TrinoSection(Section):
    host: str
    port: int = Field(default=443, gt=0, lt=65536)
    user: str
    catalog: str
    schema_: str = Field(alias="schema")
    http_scheme: Literal["http", "https"] = "https"


class RedshiftSection(Section):
    host: str
    port: int = Field(default=5439, gt=0, lt=65536)
    database: str
    user: str


class WarehouseSection(Section):
    """The warehouse engines' settings (metrics = clickhouse, spark, bigquery, snowflake, trino or redshift):
    docs/configuration.md#warehouses."""

    metrics: str | None = Field(default=None, description="The metrics catalog file (metrics.yaml); none: every "
                                "metric a label of the embedded schema's tables.")
    incremental: bool = Field(default=True, description="Keep the append-only rollup in the warehouse and answer "
                              "checks from it; false: every check runs the full statement.")
    rollup_prefix: str = Field(default="abrollout_rollup_", pattern=r"^([A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_]"
                               r"[A-Za-z0-9_]*$", description="The rollup's tables are this + marks/users/sums; "
                               "may name a schema (analytics.abrollout_).")
    clickhouse: ClickHouseSection = Field(default_factory=ClickHouseSection)
    spark: SparkSection = Field(default_factory=SparkSection)
    bigquery: BigQuerySection | None = None
    snowflake: SnowflakeSection | None = None
    trino: TrinoSection | None = None
    redshift: RedshiftSection | None = None


class WorkerConfig(Section):
    adapters: Choices = Field(default_factory=Choices)
    safety_net: SafetyNetSection = Field(default_factory=SafetyNetSection)
    unleash: UnleashSection = Field(default_factory=UnleashSection)
    postgres: PostgresSection = Field(default_factory=PostgresSection)
    prometheus: PrometheusSection | None = None
    webhook: UrlSection | None = None
    github: GitHubSection | None = None
    warehouse: WarehouseSection = Field(default_factory=WarehouseSection)

    @property
    def all_local(self) -> bool:
        a = self.adapters
        return (a.flags, a.metrics, a.registry, a.tickets, a.guardrails) == ("local", "local", "local", "local", "none")


def load_config(path: str | None) -> WorkerConfig:
    """The config file at `path` (none: every adapter embedded); errors name the key and the fix."""
    return load_toml(path, WorkerConfig, "ABROLLOUT_CONFIG / --config") if path else WorkerConfig()


def load_toml(path: str, model: type[Model], given_by: str) -> Model:
    """The TOML file at `path` checked against `model`; an error names the file, the key and the fix, never a
    traceback. `given_by`: where the path came from, for a file that does not exist."""
    try:
        return model.model_validate(tomllib.loads(Path(path).read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise AdapterConfigError(f"config file {path} does not exist ({given_by})") from None
    except tomllib.TOMLDecodeError as exc:
        raise AdapterConfigError(f"{path} is not valid TOML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise AdapterConfigError(f"{path}: [{where}] {first['msg']}") from None


def load_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """Secrets from ABROLLOUT_SECRETS_FILE (TOML: unleash_token = "...") overridden by the environment."""
    secrets: dict[str, str] = {}
    secrets_file = environ.get("ABROLLOUT_SECRETS_FILE")
    if secrets_file:
        try:
            loaded = tomllib.loads(Path(secrets_file).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise AdapterConfigError(f"secrets file {secrets_file} cannot be read ({type(exc).__name__})") from None
        unknown = sorted(set(loaded) - set(SECRET_VARIABLES))
        if unknown:
            raise AdapterConfigError(f"secrets file {secrets_file}: unknown keys {unknown}; "
                                     f"allowed: {sorted(SECRET_VARIABLES)}")
        secrets.update({k: str(v) for k, v in loaded.items()})
    secrets.update({key: environ[var] for key, var in SECRET_VARIABLES.items() if environ.get(var)})
    return secrets


def _secret(secrets: Mapping[str, str], key: str, needed_by: str) -> str:
    """The secret, checked so that a bad one stops the worker with one line naming it (never quoting it)."""
    value = secrets.get(key)
    if not value:
        raise AdapterConfigError(f"{needed_by} needs {SECRET_VARIABLES[key]} in the worker's environment "
                                 f"(or {key} in ABROLLOUT_SECRETS_FILE)")
    bad = next((i for i, char in enumerate(value) if not (char.isascii() and char.isprintable())), None)
    if key in HEADER_SECRETS and bad is not None:
        raise AdapterConfigError(f"{SECRET_VARIABLES[key]} (or {key} in ABROLLOUT_SECRETS_FILE) has a character "
                                 f"that is not printable ASCII at position {bad + 1}, which an HTTP header cannot "
                                 "carry: set it to the token exactly as issued (no accented letters, no line breaks)")
    return value


async def _checked(stack: AsyncExitStack, adapter: Any, create_schema: bool = False) -> Any:
    """Open (and, where asked, create the tables of) and check an adapter, closing it with the worker; any
    failure is an AdapterConfigError."""
    try:
        if hasattr(adapter, "open"):
            await adapter.open()
        close = getattr(adapter, "aclose", None) or getattr(adapter, "close", None)
        if close is not None:
            stack.push_async_callback(_close, close)
        if create_schema:
            await adapter.ensure_schema()
        if hasattr(adapter, "check"):
            await adapter.check()
    except AdapterConfigError:
        raise
    except Exception as exc:  # an adapter's own connection error: report it as configuration, without secrets
        raise AdapterConfigError(f"{adapter.name} adapter failed its start-up check: {type(exc).__name__}") from None
    return adapter


def _tables(config: WorkerConfig) -> Any:
    from adapters.postgres_metrics import WarehouseTables

    try:
        return WarehouseTables(**config.postgres.tables)
    except (TypeError, ValueError) as exc:
        raise AdapterConfigError(f"[postgres.tables]: {exc}") from None


def _mirror(config: WorkerConfig, stack: AsyncExitStack) -> Any:
    """Simulation only: also push simulated per-arm means of `mirror_metrics` to Prometheus."""
    if config.prometheus is None or not config.prometheus.mirror_metrics:
        return None
    from adapters.prometheus_remote_write import PrometheusMirror

    write_url = config.prometheus.url.rstrip("/") + "/api/v1/write"
    series = {metric: f"abrollout_{metric}" for metric in config.prometheus.mirror_metrics}

    def wrap(store: Any) -> Any:
        mirror = PrometheusMirror(store, write_url, series)
        stack.callback(mirror.close)
        return mirror

    return wrap


async def _close(close: Any) -> None:
    result = close()
    if hasattr(result, "__await__"):
        await result


async def build_adapters(config: WorkerConfig, data_dir: Path, secrets: Mapping[str, str],
                         stack: AsyncExitStack) -> Adapters:
    """The configured adapters, opened and checked; the embedded ones live under `data_dir`, and only those the
    config chose are opened (no SQLite or DuckDB file beside Unleash or PostgreSQL)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    choice = config.adapters
    flags: FlagProvider
    if choice.flags == "unleash":
        token = _secret(secrets, "unleash_token", "flags = unleash")
        from adapters.unleash import UnleashFlags

        u = config.unleash
        flags = await _checked(stack, UnleashFlags(u.url, token, project=u.project, environment=u.environment))
    else:
        flags = LocalFlags(data_dir / "flags.sqlite")
    simulate = config.all_local or choice.allow_simulation
    metrics: MetricsSource
    registry: Registry
    if choice.metrics == "postgres" or choice.registry == "postgres":
        dsn = _secret(secrets, "postgres_dsn", "metrics/registry = postgres")
    if choice.metrics == "postgres":
        from adapters.postgres_metrics import PostgresMetrics

        warehouse = PostgresMetrics(dsn, _tables(config), flags=flags if simulate else None, simulate=simulate,
                                    wrap_store=_mirror(config, stack) if simulate else None,
                                    rollup=config.postgres.rollup, catalog=_catalog(config))
        metrics = await _checked(stack, warehouse, config.postgres.create_tables)
    elif choice.metrics in WAREHOUSES:
        metrics = await _warehouse(config, data_dir, secrets, stack)
    else:
        metrics = LocalMetrics(data_dir / "metrics.duckdb", flags=flags if simulate else None,
                               catalog=_catalog(config) or BUILT_IN)
    if choice.registry == "postgres":
        from adapters.postgres_registry import PostgresRegistry

        registry = await _checked(stack, PostgresRegistry(dsn), config.postgres.create_tables)
    else:
        registry = LocalRegistry(data_dir / "registry.sqlite")
    tsdb = None
    if choice.guardrails == "prometheus":
        from adapters.prometheus import PrometheusGuardrails

        if config.prometheus is None:
            raise AdapterConfigError("guardrails = prometheus needs a [prometheus] url")
        prometheus = await _checked(stack, PrometheusGuardrails(config.prometheus.url))
        metrics, tsdb = CompositeMetrics(metrics, prometheus), prometheus
    return Adapters(flags=flags, registry=registry, metrics=metrics,
                    dashboards=LocalDashboards(data_dir / "dashboards"),
                    tickets=await _tickets(config, data_dir, secrets, stack), accelerated_clock_allowed=simulate,
                    tsdb=tsdb)


def _catalog(config: WorkerConfig) -> Catalog | None:
    """The metrics file `[warehouse] metrics` names, read and checked; None without one."""
    return load_catalog(Path(config.warehouse.metrics)) if config.warehouse.metrics else None


def metrics_dialect(choice: str) -> str:
    """The SQL dialect of a metrics choice's statements (the embedded store is DuckDB)."""
    return "duckdb" if choice == "local" else choice


async def _warehouse(config: WorkerConfig, data_dir: Path, secrets: Mapping[str, str],
                     stack: AsyncExitStack) -> WarehouseMetrics:
    """The configured warehouse as the metrics source: its engine (connected, closed with the worker, and
    checked with one trivial statement) and the metrics catalog."""
    settings = config.warehouse
    catalog = _catalog(config) or BUILT_IN
    name = config.adapters.metrics
    try:
        engine = await asyncio.to_thread(_engine, config, data_dir, secrets)
        stack.callback(engine.close)
        await asyncio.to_thread(engine.query, "SELECT 1 AS ok")
    except AdapterConfigError:
        raise
    except Exception as exc:  # the vendor's own connection error: configuration, named without its text
        raise AdapterConfigError(f"metrics = {name}: the warehouse failed its start-up check: "
                                 f"{type(exc).__name__}") from None
    return WarehouseMetrics(engine, catalog, incremental=settings.incremental, prefix=settings.rollup_prefix)


def _engine(config: WorkerConfig, data_dir: Path, secrets: Mapping[str, str]) -> Engine:
    """The engine `[adapters] metrics` names, its module imported only now (each needs its own client)."""
    name, w = config.adapters.metrics, config.warehouse
    needed_by = f"metrics = {name}"
    if name == "clickhouse":
        from adapters.warehouse.chdb_engine import ChdbEngine

        return ChdbEngine(Path(w.clickhouse.path) if w.clickhouse.path else data_dir / "chdb")
    if name == "spark":
        from adapters.warehouse.spark_engine import SparkEngine

        return SparkEngine.connect(w.spark.master, Path(w.spark.warehouse_dir) if w.spark.warehouse_dir else None)
    from adapters.warehouse import vendors

    if name == "bigquery":
        bq = _needs(w.bigquery, name, "project and dataset")
        return vendors.BigQueryEngine.connect(project=bq.project, dataset=bq.dataset, location=bq.location)
    if name == "snowflake":
        sf = _needs(w.snowflake, name, "account and user")
        key = secrets.get("snowflake_private_key")
        password = None if key else _secret(secrets, "snowflake_password", f"{needed_by} (without "
                                            f"{SECRET_VARIABLES['snowflake_private_key']})")
        return vendors.SnowflakeEngine.connect(account=sf.account, user=sf.user, warehouse=sf.warehouse,
                                               database=sf.database, schema=sf.schema_, role=sf.role,
                                               password=password, private_key_pem=key)
    if name == "trino":
        tr = _needs(w.trino, name, "host, user, catalog and schema")
        return vendors.TrinoEngine.connect(host=tr.host, port=tr.port, user=tr.user, catalog=tr.catalog,
                                           schema=tr.schema_, http_scheme=tr.http_scheme,
                                           password=secrets.get("trino_password"))
    rs = _needs(w.redshift, name, "host, database and user")
    return vendors.RedshiftEngine.connect(host=rs.host, port=rs.port, database=rs.database, user=rs.user,
                                          password=_secret(secrets, "redshift_password", needed_by))


SectionModel = TypeVar("SectionModel", bound=Section)


def _needs(section: SectionModel | None, name: str, keys: str) -> SectionModel:
    if section is None:
        raise AdapterConfigError(f"metrics = {name} needs a [warehouse.{name}] section with its {keys}")
    return section


async def _tickets(config: WorkerConfig, data_dir: Path, secrets: Mapping[str, str],
                   stack: AsyncExitStack) -> TicketSystem:
    choice = config.adapters.tickets
    if choice == "webhook":
        from adapters.tickets_http import WebhookTickets

        if config.webhook is None:
            raise AdapterConfigError("tickets = webhook needs a [webhook] url")
        tickets: TicketSystem = WebhookTickets(config.webhook.url, secret=secrets.get("webhook_secret"))
        return tickets
    if choice == "github":
        from adapters.tickets_http import GitHubIssues

        if config.github is None:
            raise AdapterConfigError("tickets = github needs a [github] repo")
        return GitHubIssues(config.github.repo, _secret(secrets, "github_token", "tickets = github"),
                            api_url=config.github.api_url)
    return LocalTickets(data_dir / "tickets.sqlite")


def config_path(flag: str | None) -> str | None:
    return flag or os.environ.get("ABROLLOUT_CONFIG") or None
