"""What the statements return, as per-arm statistics: the full statement's rows (one per arm) and the rollup's
(one per arm and metric) become the same exact integers, then `MetricStats` in metric units."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from abrollout.contracts.verdicts import MetricStats
from abrollout.warehouse.layout import VALUE_SCALE, Layout
from abrollout.warehouse.rollup import SUM_COLUMNS

TERMS = ("sum", "sum_sq", "pre_sum", "pre_sum_sq", "pre_sum_product", "denom_sum", "denom_sum_sq",
         "denom_sum_product")
"""An arm's exact sums for one metric, in micro-units (products in micro-units squared)."""


@dataclass(frozen=True)
class ArmSums:
    """Exact integers per arm: users, and per metric the covariate count and `TERMS`."""

    n: dict[str, int]
    pre_n: dict[tuple[str, str], int]
    sums: dict[tuple[str, str], dict[str, int]]
    latest: dict[str | None, int]
    """The latest exposure (key None) and each metric's latest event."""
    covariate_rows: dict[str, int]
    """Per metric, its covariate rows (of any user): without any, no CUPED sums even for an empty window."""

    def freshest(self, metrics: Sequence[str]) -> float | None:
        """The latest exposure or event of one of `metrics`: how fresh the statistics are. Other metrics' events
        do not count: a pipeline still delivering them must not hide that these have stopped."""
        times = [self.latest[key] for key in (None, *metrics) if key in self.latest]
        return float(max(times)) if times else None

    def assignments(self, arms: Sequence[str]) -> dict[str, int]:
        """Users per arm: `arms` first, present even without users, then any other arm seen."""
        ordered = [*arms, *sorted(set(self.n) - set(arms))]
        return {arm: self.n.get(arm, 0) for arm in ordered}

    def metric_stats(self, layout: Layout, names: Sequence[str], arms: Sequence[str]
                     ) -> dict[str, dict[str, MetricStats]]:
        """Per metric of `names` and arm, in metric units. The CUPED sums only when every exposed user of every arm
        has a covariate (the statistics would read a missing one as 0); the ratio terms for a ratio."""
        order = self.assignments(arms)
        stats: dict[str, dict[str, MetricStats]] = {}
        for name in names:
            definition = layout.definitions[layout.metrics.index(name)]
            complete = self.covariate_rows.get(name, 0) > 0 and all(
                self.pre_n.get((arm, name), 0) == n for arm, n in order.items())
            per_arm = {}
            for arm, n in order.items():
                sums = self.sums.get((arm, name), {})
                extra: dict[str, float] = {}
                if complete:
                    extra |= {term: _units(sums.get(term), term) for term in TERMS[2:5]}
                if definition.denominator is not None:
                    extra |= {term: _units(sums.get(term), term) for term in TERMS[5:]}
                per_arm[arm] = MetricStats(n=n, sum=_units(sums.get("sum"), "sum"),
                                           sum_sq=_units(sums.get("sum_sq"), "sum_sq"), **extra)
            stats[name] = per_arm
        return stats


def from_statement(rows: Sequence[Mapping[str, Any]], layout: Layout) -> ArmSums:
    """The full statement's rows: one per arm (sums as decimal text), and one without an arm for users with rows
    but no exposure; each row carries its users' latest exposure and events and their covariate rows."""
    n: dict[str, int] = {}
    pre_n: dict[tuple[str, str], int] = {}
    sums: dict[tuple[str, str], dict[str, int]] = {}
    latest: dict[str | None, int] = {}
    covariate_rows: dict[str, int] = {}
    for row in rows:
        _later(latest, None, row["latest_e"])
        for i, name in enumerate(layout.metrics):
            _later(latest, name, row.get(f"latest_{i}"))
            if row.get(f"covariates_{i}") is not None:
                covariate_rows[name] = covariate_rows.get(name, 0) + _int(row[f"covariates_{i}"])
        if row["arm"] is None:
            continue
        arm = str(row["arm"])
        n[arm] = int(row["n"])
        for i, name in enumerate(layout.metrics):
            sums[arm, name] = {term: _int(row[f"{term}_{i}"]) for term in TERMS if f"{term}_{i}" in row}
            if f"pre_n_{i}" in row:
                pre_n[arm, name] = int(row[f"pre_n_{i}"])
    return ArmSums(n=n, pre_n=pre_n, sums=sums, latest=latest, covariate_rows=covariate_rows)


def from_rollup(rows: Sequence[Mapping[str, Any]], layout: Layout) -> tuple[ArmSums, int | None]:
    """The rollup's read (one row per arm and metric; arm '' carrying latest times), and the latest time folded
    in: the rollup answers a window only if that is inside it."""
    n: dict[str, int] = {}
    pre_n: dict[tuple[str, str], int] = {}
    sums: dict[tuple[str, str], dict[str, int]] = {}
    latest: dict[str | None, int] = {}
    covariate_rows: dict[str, int] = {}
    for row in rows:
        arm, metric = str(row["arm"]), str(row["metric"])
        if arm == "":
            _later(latest, metric or None, row["latest"])
            if metric:
                covariate_rows[metric] = _int(row["pn"])
        elif metric == "":
            if int(row["n"]):
                n[arm] = int(row["n"])
        elif metric in layout.metrics:
            pre_n[arm, metric] = int(row["pn"])
            sums[arm, metric] = {term: _int(row[column]) for term, column in zip(TERMS, SUM_COLUMNS, strict=True)}
    folded = max(latest.values(), default=None)
    kept = {key: value for key, value in sums.items() if key[0] in n}
    return ArmSums(n=n, pre_n=pre_n, sums=kept, latest=latest, covariate_rows=covariate_rows), folded


def _later(latest: dict[str | None, int], key: str | None, value: object) -> None:
    if value is not None:
        latest[key] = max(int(str(value)), latest.get(key, int(str(value))))


def _int(value: object) -> int:
    """An exact sum as the driver returned it (text, int or Decimal); NULL (no rows) is 0."""
    return 0 if value is None else int(str(value))


def _units(micro_units: int | None, term: str) -> float:
    """An exact integer sum back in metric units: products of two values carry the scale twice."""
    power = 1 if term in ("sum", "pre_sum", "denom_sum") else 2
    return 0.0 if micro_units is None else micro_units / VALUE_SCALE**power
