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
    scans = [scan.sid for scan in (*layout.scans, *layout.covariate_scans)]
    joins = "".join(f"\n    FULL JOIN {sid} ON {sid}.user_id = "
                    f"{_first_of([f'{earlier}.user_id' for earlier in ['exposed', *scans[:k]]])}"
                    for k, sid in enumerate(scans))
    latest = [("exposed.latest", "latest_e", "MAX")]
    latest += [(f"{scan.sid}.t{i}", f"latest_{i}", "MAX") for scan in layout.scans for i in scan.members]
    latest += [(f"{scan.sid}.nx{i}", f"covariates_{i}", "SUM") for scan in layout.covariate_scans
               for i in scan.members]
    per_user = ["exposed.arm", *(f"{column} AS {name}" for column, name, _ in latest), *_per_user_columns(layout)]
    per_arm = ["arm", "COUNT(*) AS n", *(f"{how}({name}) AS {name}" for _, name, how in latest),
               *(column for i in range(len(layout.metrics)) for column in arm_sums(layout, i))]
    definitions = ",\n".join(f"{name} AS (\n{body}\n)" for name, body in ctes)
    return (f"-- per-arm sufficient statistics of a window, values in units of 1/{VALUE_SCALE}; the arm-NULL row is "
            "users with rows but no exposure in the window: it counts only for the latest times and covariate rows\n"
            f"WITH {definitions},\nper_user AS (\nSELECT {', '.join(per_user)}\nFROM exposed{joins}\n)\n"
            f"SELECT {', '.join(per_arm)}\nFROM per_user\nGROUP BY arm\nORDER BY arm")


def _first_of(columns: list[str]) -> str:
    """The first non-NULL of `columns` (a FULL JOIN's user, from whichever side has one)."""
    return columns[0] if len(columns) == 1 else f"COALESCE({', '.join(columns)})"


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
