"""The per-user reads of each source, shared by the full statement (rows in a time window) and the rollup (rows
past a watermark): the caller passes the rows' extra conditions."""

from __future__ import annotations

from collections.abc import Callable

from abrollout.warehouse.layout import Layout, Scan

Window = Callable[[str, str], list[str]]
"""(scan id, the source's timestamp expression or "" for covariates) -> the extra conditions on its rows."""


def exposure_scan(layout: Layout, window: Window) -> str:
    """Exposed users in the rows: the first arm in byte order, and the latest exposure time."""
    exposures = layout.catalog.exposures
    ts = layout.expr(exposures.timestamp)
    return select([f"{layout.user(exposures)} AS user_id",
                   f"MIN(CAST({layout.expr(exposures.variant)} AS VARCHAR)) AS arm", f"MAX({ts}) AS latest"],
                  layout.origin(exposures),
                  [*layout.experiment(exposures), *window("e", ts), layout.condition(exposures)],
                  layout.user(exposures))


def metric_scan(layout: Layout, scan: Scan, window: Window) -> str:
    """A source's rows per user: metric i's summed micro-units y<i> and latest time t<i>."""
    source = scan.source
    ts = layout.expr(layout.definitions[scan.members[0]].timestamp)
    columns = [f"{layout.user(source)} AS user_id"]
    conditions = []
    for i in scan.members:
        definition = layout.definitions[i]
        condition = layout.condition(definition)
        conditions.append(condition)
        columns += [f"SUM(CASE WHEN {condition} THEN {layout.micro(definition.value)} END) AS y{i}",
                    f"MAX(CASE WHEN {condition} THEN {ts} END) AS t{i}"]
    return select(columns, layout.origin(source),
                  [*layout.experiment(source), *window(scan.sid, ts), _any(conditions)], layout.user(source))


def covariate_scan(layout: Layout, scan: Scan, window: Window) -> str:
    """A covariate source's rows per user: metric i's summed pre-period micro-units x<i> and their count nx<i>."""
    source = scan.source
    columns = [f"{layout.user(source)} AS user_id"]
    conditions = []
    for i in scan.members:
        covariate = layout.definitions[i].covariate
        assert covariate is not None
        condition = layout.condition(covariate)
        conditions.append(condition)
        columns += [f"SUM(CASE WHEN {condition} THEN {layout.micro(covariate.value)} END) AS x{i}",
                    f"CAST(COUNT(CASE WHEN {condition} THEN 1 END) AS BIGINT) AS nx{i}"]
    return select(columns, layout.origin(source), [*layout.experiment(source), *window(scan.sid, ""),
                                                   _any(conditions)], layout.user(source))


def _any(conditions: list[str]) -> str:
    if "TRUE" in conditions:
        return "TRUE"
    return "(" + " OR ".join(conditions) + ")"


def select(columns: list[str], origin: str, where: list[str], group: str = "") -> str:
    conditions = [c for c in where if c != "TRUE"] or ["TRUE"]
    grouped = f"\nGROUP BY {group}" if group else ""
    return f"SELECT {', '.join(columns)}\nFROM {origin}\nWHERE {' AND '.join(conditions)}{grouped}"
