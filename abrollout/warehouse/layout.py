"""What one set of metrics reads, laid out for the SQL: the sources to scan (metrics from the same table share one
scan), each metric's column names, and its definition's expressions rewritten in the source dialect.

Shared by the full statement and the incremental rollup, so that both read the same rows the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from abrollout.warehouse.catalog import Catalog, CovariateSource, MetricDefinition, MetricKind, Source
from abrollout.warehouse.dialects import placeholder, qualified, transpile_expression, transpile_query

VALUE_SCALE = 1_000_000
"""Values are summed in units of 1/VALUE_SCALE as integers: exact whatever the engine's order of addition."""


@dataclass(frozen=True)
class Scan:
    """One source table scanned once for several metrics (or covariates): `sid` names it in the SQL."""

    sid: str
    source: Source
    members: tuple[int, ...]


@dataclass(frozen=True)
class Layout:
    """The metrics `names` (in order; a ratio's denominator appended if not asked for) as read from `catalog`."""

    catalog: Catalog
    names: tuple[str, ...]

    @classmethod
    def keyed(cls, catalog: Catalog, metrics: Sequence[str]) -> Layout:
        """The layout a metrics source keys its statements and rollup by: the metrics sorted, each once, so the
        order a check names them in never makes a second rollup."""
        return cls(catalog, tuple(sorted(set(metrics))))

    @cached_property
    def definitions(self) -> tuple[MetricDefinition, ...]:
        return tuple(self.catalog.resolve(list(self.names)).values())

    @cached_property
    def metrics(self) -> tuple[str, ...]:
        """Every metric read: the asked ones, then denominators."""
        return tuple(self.catalog.resolve(list(self.names)))

    @cached_property
    def scans(self) -> tuple[Scan, ...]:
        return _group("s", [(i, d) for i, d in enumerate(self.definitions)])

    @cached_property
    def covariate_scans(self) -> tuple[Scan, ...]:
        return _group("c", [(i, d.covariate) for i, d in enumerate(self.definitions) if d.covariate is not None])

    def expr(self, sql: str) -> str:
        """A catalog expression in the source dialect."""
        return transpile_expression(sql, self.catalog.dialect)

    def origin(self, source: Source) -> str:
        """The FROM item of a source: its table, or its query as a subquery."""
        if source.table is not None:
            return qualified(source.table)
        assert source.sql is not None
        return "(" + transpile_query(source.sql, self.catalog.dialect) + ") AS src"

    def user(self, source: Source) -> str:
        return f"CAST({self.expr(source.user_id)} AS VARCHAR)"

    def condition(self, source: Source) -> str:
        """A source's own filters, TRUE without any."""
        return " AND ".join(self.expr(f) for f in source.filters) or "TRUE"

    def experiment(self, source: Source) -> list[str]:
        """The condition selecting this experiment's rows (none for a source of one experiment)."""
        if source.experiment_key is None:
            return []
        return [f"{self.expr(source.experiment_key)} = {placeholder('abr_key')}"]

    def micro(self, value: str) -> str:
        """A value in whole micro-units: floor(v * 1e6 + 0.5) in IEEE doubles, the same integer on every engine."""
        return f"CAST(FLOOR(CAST({self.expr(value)} AS DOUBLE) * {VALUE_SCALE} + 0.5) AS BIGINT)"

    def value(self, index: int, total: str) -> str:
        """Metric `index`'s per-user value from the user's summed micro-units `total` (NULL when none)."""
        if self.definitions[index].kind is MetricKind.proportion:
            return f"CASE WHEN {total} > 0 THEN {VALUE_SCALE} ELSE 0 END"
        return f"COALESCE({total}, 0)"

    def denominator(self, index: int) -> int | None:
        """The index of metric `index`'s denominator, for a ratio."""
        name = self.definitions[index].denominator
        return None if name is None else self.metrics.index(name)

    @cached_property
    def incremental(self) -> bool:
        """Whether every source can be read past a watermark: each has `loaded_at` and names the experiment."""
        sources: list[Source] = [self.catalog.exposures, *(scan.source for scan in self.scans),
                                 *(scan.source for scan in self.covariate_scans)]
        return all(s.loaded_at is not None and s.experiment_key is not None for s in sources)


def _group(prefix: str, members: list[tuple[int, Source]]) -> tuple[Scan, ...]:
    """Metrics whose sources differ only in their filters share a scan."""
    by_origin: dict[str, list[tuple[int, Source]]] = {}
    for index, source in members:
        key = source.model_dump_json(include=_SCAN_FIELDS[type(source)])
        by_origin.setdefault(key, []).append((index, source))
    return tuple(Scan(f"{prefix}{n}", group[0][1], tuple(i for i, _ in group))
                 for n, group in enumerate(by_origin.values()))


_SHARED = {"table", "sql", "user_id", "experiment_key", "loaded_at"}
_SCAN_FIELDS: dict[type[Source], set[str]] = {MetricDefinition: _SHARED | {"timestamp"}, CovariateSource: _SHARED}
