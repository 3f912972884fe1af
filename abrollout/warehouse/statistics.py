"""The full statement: per-arm sufficient statistics of a window, from every row in it. The reference the
incremental rollup must equal, what a check records, and what answers when the rollup cannot.

Each source is grouped by user on its own (a metric's value, its latest time, its covariate), the groups are
joined to the exposed users, and each arm sums its users' values, squares and products in exact decimals. Users
with rows but no exposure in the window have no arm and are left out; a user exposed in two arms counts once, in
the arm first in byte order.
"""

from __future__ import annotations

from abrollout.warehouse.dialects import EXACT, placeholder
from abrollout.warehouse.layout import VALUE_SCALE, Layout
from abrollout.warehouse.scans import covariate_scan, exposure_scan, metric_scan

UNTIL = placeholder("abr_until")


def statistics_template(layout: Layout) -> str:
    """The statement, with placeholders `abr_key` (the experiment) and `abr_until` (the window's end)."""
    def window(sid: str, ts: str) -> list[str]:
        return [f"{ts} <= {UNTIL}"] if ts else []

    ctes = [("exposed", exposure_scan(layout, window))]
    ctes += [(scan.sid, metric_scan(layout, scan, window)) for scan in layout.scans]
    ctes += [(scan.sid, covariate_scan(layout, scan, window)) for scan in layout.covariate_scans]
    joins = "".join(f"\n    LEFT JOIN {scan.sid} ON {scan.sid}.user_id = exposed.user_id"
                    for scan in (*layout.scans, *layout.covariate_scans))
    per_user = ["exposed.arm", *_per_user_columns(layout)]
    sums = [column for i in range(len(layout.metrics)) for column in arm_sums(layout, i)]
    latest = ["(SELECT MAX(latest) FROM exposed) AS latest_e"]
    latest += [f"(SELECT MAX(t{i}) FROM {scan.sid}) AS latest_{i}" for scan in layout.scans for i in scan.members]
    latest += [f"(SELECT SUM(nx{i}) FROM {scan.sid}) AS covariates_{i}" for scan in layout.covariate_scans
               for i in scan.members]
    latest_names = [column.rsplit(" AS ", 1)[1] for column in latest]
    per_arm = ["arm", "COUNT(*) AS n", *(f"CAST(NULL AS BIGINT) AS {name}" for name in latest_names), *sums]
    fresh = ["CAST(NULL AS VARCHAR) AS arm", "0 AS n", *latest,
             *(f"CAST(NULL AS {'BIGINT' if column.startswith('CAST(COUNT') else 'VARCHAR'}) AS "
               f"{column.rsplit(' AS ', 1)[1]}" for column in sums)]
    definitions = ",\n".join(f"{name} AS (\n{body}\n)" for name, body in ctes)
    return (f"-- per-arm sufficient statistics of a window, values in units of 1/{VALUE_SCALE}; the row without an "
            "arm carries the latest times and the covariate rows\n"
            f"WITH {definitions},\nper_user AS (\nSELECT {', '.join(per_user)}\nFROM exposed{joins}\n)\n"
            f"SELECT {', '.join(per_arm)}\nFROM per_user\nGROUP BY arm\n"
            f"UNION ALL\nSELECT {', '.join(fresh)}\nORDER BY arm")


def _per_user_columns(layout: Layout) -> list[str]:
    """Each metric's per-user value v<i> and covariate x<i> (NULL without one)."""
    scan_of = {i: scan.sid for scan in layout.scans for i in scan.members}
    covariate_of = {i: scan.sid for scan in layout.covariate_scans for i in scan.members}
    columns = []
    for i in range(len(layout.metrics)):
        columns.append(f"{layout.value(i, f'{scan_of[i]}.y{i}')} AS v{i}")
        if i in covariate_of:
            sid = covariate_of[i]
            columns.append(f"CASE WHEN {sid}.nx{i} > 0 THEN {sid}.x{i} END AS x{i}")
    return columns


def arm_sums(layout: Layout, i: int) -> list[str]:
    """Metric i's per-arm sums over the per-user columns v<i> and x<i>, as exact decimals written as text (every
    engine's driver reads text the same way), and the covariate's count."""
    columns = [f"CAST(SUM({term}) AS VARCHAR) AS {name}" for name, term in sum_terms(layout, i, "v{i}", "x{i}")]
    if layout.definitions[i].covariate is not None:
        columns.append(f"CAST(COUNT(x{i}) AS BIGINT) AS pre_n_{i}")
    return columns


def sum_terms(layout: Layout, i: int, value: str, covariate: str) -> list[tuple[str, str]]:
    """Metric i's summed terms (name, per-user term) over per-user columns `value` and `covariate` ({i} filled
    with the metric's index, or its denominator's for the ratio's terms)."""
    v, x = _exact(value.format(i=i)), _exact(covariate.format(i=i))
    terms = [(f"sum_{i}", v), (f"sum_sq_{i}", f"{v} * {v}")]
    if layout.definitions[i].covariate is not None:
        terms += [(f"pre_sum_{i}", x), (f"pre_sum_sq_{i}", f"{x} * {x}"), (f"pre_sum_product_{i}", f"{x} * {v}")]
    denominator = layout.denominator(i)
    if denominator is not None:
        d = _exact(value.format(i=denominator))
        terms += [(f"denom_sum_{i}", d), (f"denom_sum_sq_{i}", f"{d} * {d}"), (f"denom_sum_product_{i}", f"{v} * {d}")]
    return terms


def _exact(column: str) -> str:
    return f"CAST({column} AS {EXACT})"
