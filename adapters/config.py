"""Which adapters a worker uses: one TOML file for the choices and settings, secrets only from the environment (or
a secrets file). Every adapter is checked at start-up, so a wrong URL or token fails the worker at once, not the
first experiment hours later. The file, key by key: docs/configuration.md#the-worker-config-file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.composite_metrics import CompositeMetrics
from adapters.local_dashboards import LocalDashboards
from adapters.local_flags import LocalFlags
from adapters.local_metrics import LocalMetrics
from adapters.local_registry import LocalRegistry
from adapters.local_tickets import LocalTickets
from adapters.protocols import AdapterConfigError, Adapters, FlagProvider, MetricsSource, Registry, TicketSystem

SECRET_VARIABLES = {
    "unleash_token": "UNLEASH_TOKEN",
    "postgres_dsn": "ABROLLOUT_POSTGRES_DSN",
    "webhook_secret": "ABROLLOUT_WEBHOOK_SECRET",
    "github_token": "GITHUB_TOKEN",
}
HEADER_SECRETS = frozenset({"unleash_token", "github_token"})
"""Secrets sent as HTTP header values, which carry printable ASCII only (httpx refuses anything else mid-request)."""
Model = TypeVar("Model", bound=BaseModel)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Choices(Section):
    flags: Literal["local", "unleash"] = "local"
    metrics: Literal["local", "postgres"] = "local"
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


class WorkerConfig(Section):
    adapters: Choices = Field(default_factory=Choices)
    safety_net: SafetyNetSection = Field(default_factory=SafetyNetSection)
    unleash: UnleashSection = Field(default_factory=UnleashSection)
    postgres: PostgresSection = Field(default_factory=PostgresSection)
    prometheus: PrometheusSection | None = None
    webhook: UrlSection | None = None
    github: GitHubSection | None = None

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
                                    rollup=config.postgres.rollup)
        metrics = await _checked(stack, warehouse, config.postgres.create_tables)
    else:
        metrics = LocalMetrics(data_dir / "metrics.duckdb", flags=flags if simulate else None)
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
