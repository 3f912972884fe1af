"""The embedded store's running aggregate: per-arm sums kept up to date as rows are written, so a check costs what
its new rows cost instead of a pass over every user exposed so far. It answers a window that holds every row
written (`max_at_s <= until`), equal to the statistics query (`local_metrics.aggregate_sql`, still the definition)
to the digit; an earlier window runs the query. The tables and how the fold stays exact: docs/adapters.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np

from adapters.simulator import Floats, Rows

VALUE_SCALE = 1_000_000
"""Values are aggregated in units of 1/VALUE_SCALE: integer sums are exact, whatever the order (docs/adapters.md)."""
MICRO_UNITS_SQL = f"CAST(round(value * {VALUE_SCALE}) AS BIGINT)"

SCHEMA = """
CREATE TABLE IF NOT EXISTS rollup_marks (
    exp_key VARCHAR PRIMARY KEY, exposure_rows BIGINT NOT NULL, max_at_s INTEGER);
CREATE TABLE IF NOT EXISTS rollup_users (exp_key VARCHAR NOT NULL, user_id VARCHAR NOT NULL, arm VARCHAR);
CREATE TABLE IF NOT EXISTS rollup_values (
    exp_key VARCHAR NOT NULL, user_id VARCHAR NOT NULL, metric VARCHAR NOT NULL, y HUGEINT NOT NULL, x HUGEINT);
CREATE TABLE IF NOT EXISTS rollup_arms (
    exp_key VARCHAR NOT NULL, arm VARCHAR, metric VARCHAR, n BIGINT NOT NULL, s HUGEINT NOT NULL,
    ss HUGEINT NOT NULL, pn BIGINT NOT NULL, ps HUGEINT NOT NULL, pss HUGEINT NOT NULL, psp HUGEINT NOT NULL,
    latest INTEGER);
"""
SUMS = ("n", "s", "ss", "pn", "ps", "pss", "psp")
READ = (f"SELECT m.exposure_rows, m.max_at_s, a.arm, a.metric, {', '.join(f'a.{name}' for name in SUMS)}, a.latest\n"
        "FROM rollup_marks AS m LEFT JOIN rollup_arms AS a ON a.exp_key = m.exp_key WHERE m.exp_key = ?")


@dataclass(frozen=True)
class Sources:
    """Where a fold reads its batch: three relations of (user_id, arm, at_s), (user_id, metric, value, at_s) and
    (user_id, metric, value), all of experiment $exp_key."""

    exposures: str
    events: str
    pre_period: str


_NUMPY = Sources("exposure_batch", "event_batch", "pre_batch")  # views of a batch's numpy columns
_TABLES = Sources(
    "(SELECT user_id, arm, at_s FROM exposures WHERE exp_key = $exp_key)",
    "(SELECT user_id, metric, value, at_s FROM metric_events WHERE exp_key = $exp_key)",
    "(SELECT user_id, metric, value FROM pre_period WHERE exp_key = $exp_key)",
)


def _fold_statements(src: Sources) -> tuple[str, ...]:
    """The fold, in the order it must run: the mark (claims the experiment: two writers of one experiment conflict
    on it and one is rolled back whole, never both folded), the arms' sums (from the users' old state), then the
    users' new state."""
    batch = _batch_sql(src)
    return _mark_sql(src), _arms_sql(src, batch), _users_sql(batch), _values_sql(batch)


_NEW_X = "CASE WHEN {old} IS NULL AND {new} IS NULL THEN NULL ELSE coalesce({old}, 0) + coalesce({new}, 0) END"
"""A user's covariate after the batch: NULL while neither the old state nor the batch has one."""
_CONTRIBUTION = ("{sign}{y}, {sign}({y} * {y}), {sign}CAST({x} IS NOT NULL AS INTEGER), {sign}{x}, "
                 "{sign}({x} * {x}), {sign}({x} * {y})")
"""A user's value's terms of the sums s .. psp, added ({sign} empty) or taken away ({sign} -)."""


def _batch_sql(src: Sources) -> str:
    """Two named subqueries shared by the statements: batch_values (each user's and metric's sums in the batch) and
    touched (each user in the batch, with the first arm in name order among their exposures)."""
    return f"""batch_values AS (
        SELECT user_id, metric, sum(v) FILTER (NOT pre) AS dy, sum(v) FILTER (pre) AS dx
        FROM (SELECT CAST(user_id AS VARCHAR) AS user_id, CAST(metric AS VARCHAR) AS metric, {MICRO_UNITS_SQL} AS v,
                     false AS pre FROM {src.events}
              UNION ALL
              SELECT CAST(user_id AS VARCHAR), CAST(metric AS VARCHAR), {MICRO_UNITS_SQL}, true FROM {src.pre_period})
        GROUP BY user_id, metric),
    touched AS (
        SELECT user_id, min(arm) AS arm
        FROM (SELECT CAST(user_id AS VARCHAR) AS user_id, CAST(arm AS VARCHAR) AS arm FROM {src.exposures}
              UNION ALL SELECT user_id, NULL FROM batch_values)
        GROUP BY user_id)"""


def _mark_sql(src: Sources) -> str:
    return f"""
INSERT INTO rollup_marks
SELECT $exp_key, (SELECT count(*) FROM {src.exposures}),
       (SELECT max(at_s) FROM (SELECT at_s FROM {src.exposures} UNION ALL SELECT at_s FROM {src.events}))
ON CONFLICT (exp_key) DO UPDATE SET exposure_rows = exposure_rows + excluded.exposure_rows,
                                    max_at_s = greatest(max_at_s, excluded.max_at_s)"""


def _arms_sql(src: Sources, batch: str) -> str:
    """The arms' sums plus each touched user's new contribution minus their old one (their old arm and values)."""
    return f"""
MERGE INTO rollup_arms AS t
USING (
    WITH {batch},
    moved AS (
        SELECT touched.user_id, old.arm AS old_arm, least(old.arm, touched.arm) AS new_arm
        FROM touched LEFT JOIN (SELECT user_id, arm FROM rollup_users WHERE exp_key = $exp_key) AS old
             ON old.user_id = touched.user_id),
    user_values AS (
        SELECT coalesce(old.user_id, b.user_id) AS user_id, coalesce(old.metric, b.metric) AS metric,
               coalesce(old.y, 0) AS old_y, old.x AS old_x, coalesce(old.y, 0) + coalesce(b.dy, 0) AS new_y,
               {_NEW_X.format(old="old.x", new="b.dx")} AS new_x
        FROM (SELECT user_id, metric, y, x FROM rollup_values
              WHERE exp_key = $exp_key AND user_id IN (SELECT user_id FROM touched)) AS old
             FULL JOIN batch_values AS b ON old.user_id = b.user_id AND old.metric = b.metric),
    terms AS (
        SELECT new_arm AS arm, NULL AS metric, 1 AS n, 0 AS s, 0 AS ss, 0 AS pn, 0 AS ps, 0 AS pss, 0 AS psp,
               NULL AS latest
        FROM moved WHERE new_arm IS NOT NULL
        UNION ALL SELECT old_arm, NULL, -1, 0, 0, 0, 0, 0, 0, NULL FROM moved WHERE old_arm IS NOT NULL
        UNION ALL SELECT NULL, CAST(metric AS VARCHAR), 1, 0, 0, 0, 0, 0, 0, NULL FROM {src.pre_period}
        UNION ALL SELECT NULL, NULL, 0, 0, 0, 0, 0, 0, 0, max(at_s) FROM {src.exposures} HAVING count(*) > 0
        UNION ALL SELECT NULL, CAST(metric AS VARCHAR), 0, 0, 0, 0, 0, 0, 0, max(at_s) FROM {src.events}
        GROUP BY metric
        UNION ALL SELECT new_arm, metric, 0, {_CONTRIBUTION.format(sign="", y="new_y", x="new_x")}, NULL
        FROM user_values JOIN moved USING (user_id) WHERE new_arm IS NOT NULL
        UNION ALL SELECT old_arm, metric, 0, {_CONTRIBUTION.format(sign="-", y="old_y", x="old_x")}, NULL
        FROM user_values JOIN moved USING (user_id) WHERE old_arm IS NOT NULL)
    SELECT arm, metric, {", ".join(f"coalesce(sum({name}), 0) AS {name}" for name in SUMS)}, max(latest) AS latest
    FROM terms GROUP BY arm, metric
) AS d
ON t.exp_key = $exp_key AND t.arm IS NOT DISTINCT FROM d.arm AND t.metric IS NOT DISTINCT FROM d.metric
WHEN MATCHED THEN UPDATE SET {", ".join(f"{name} = t.{name} + d.{name}" for name in SUMS)},
                             latest = greatest(t.latest, d.latest)
WHEN NOT MATCHED THEN INSERT VALUES ($exp_key, d.arm, d.metric, {", ".join(f"d.{name}" for name in SUMS)}, d.latest)"""


def _users_sql(batch: str) -> str:
    return f"""
MERGE INTO rollup_users AS t
USING (WITH {batch} SELECT user_id, arm FROM touched) AS d
ON t.exp_key = $exp_key AND t.user_id = d.user_id
WHEN MATCHED AND (d.arm < t.arm OR (t.arm IS NULL AND d.arm IS NOT NULL)) THEN UPDATE SET arm = d.arm
WHEN NOT MATCHED THEN INSERT VALUES ($exp_key, d.user_id, d.arm)"""


def _values_sql(batch: str) -> str:
    return f"""
MERGE INTO rollup_values AS t
USING (WITH {batch} SELECT user_id, metric, dy, dx FROM batch_values) AS d
ON t.exp_key = $exp_key AND t.user_id = d.user_id AND t.metric = d.metric
WHEN MATCHED THEN UPDATE SET y = t.y + coalesce(d.dy, 0), x = {_NEW_X.format(old="t.x", new="d.dx")}
WHEN NOT MATCHED THEN INSERT VALUES ($exp_key, d.user_id, d.metric, coalesce(d.dy, 0), d.dx)"""


class RunningAggregate:
    """Folds batches into the running aggregate and reads it back; every call runs in the caller's transaction.

    A batch of up to `SQL_FROM_ROWS` rows (an hour of traffic) is folded in Python: one read of the touched
    users' state and a few short statements, since each statement of the SQL fold costs milliseconds to plan
    whatever the batch's size. Larger batches (bulk loads) and rows already in the tables fold in SQL."""

    SQL_FROM_ROWS = 10_000

    def __init__(self) -> None:
        self._from_batch = _fold_statements(_NUMPY)
        self._from_tables = _fold_statements(_TABLES)

    def fold_rows(self, cur: duckdb.DuckDBPyConnection, exp_key: str, rows: Rows) -> None:
        """Fold a batch being written."""
        size = len(rows.exposures.user_id) + len(rows.metric_events.user_id) + len(rows.pre_period.user_id)
        if size == 0:
            return
        if size <= self.SQL_FROM_ROWS:
            _fold_in_python(cur, exp_key, rows)
            return
        event, pre = rows.metric_events, rows.pre_period
        batches = {
            _NUMPY.exposures: {"user_id": rows.exposures.user_id, "arm": rows.exposures.arm,
                               "at_s": rows.exposures.at_s},
            _NUMPY.events: {"user_id": event.user_id, "metric": event.metric, "value": event.value, "at_s": event.at_s},
            _NUMPY.pre_period: {"user_id": pre.user_id, "metric": pre.metric, "value": pre.value},
        }
        for name, columns in batches.items():
            cur.register(name, columns)
        try:
            for statement in self._from_batch:
                cur.execute(statement, {"exp_key": exp_key})
        finally:
            for name in batches:
                cur.unregister(name)

    @staticmethod
    def upgrade(cur: duckdb.DuckDBPyConnection) -> None:
        """A file folded before rollup_arms had `latest`: add the column and empty the aggregate, so that the
        store folds every experiment again from its rows as it opens (`unmarked`). The sums were right; the
        freshness of each metric was never kept."""
        columns = cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'rollup_arms'"
                              ).fetchall()
        if ("latest",) in columns:
            return
        cur.execute("ALTER TABLE rollup_arms ADD COLUMN latest INTEGER")
        for table in ("rollup_marks", "rollup_users", "rollup_values", "rollup_arms"):
            cur.execute(f"DELETE FROM {table}")

    @staticmethod
    def unmarked(con: duckdb.DuckDBPyConnection) -> list[str]:
        """Experiments with rows but no mark: a file written before the aggregate existed, or loaded by SQL
        (benchmarks). `fold_stored` folds them."""
        found = con.execute(
            "SELECT exp_key FROM exposures UNION SELECT exp_key FROM metric_events UNION SELECT exp_key FROM "
            "pre_period EXCEPT SELECT exp_key FROM rollup_marks ORDER BY exp_key").fetchall()
        return [exp_key for (exp_key,) in found]

    def fold_stored(self, cur: duckdb.DuckDBPyConnection, exp_key: str) -> None:
        """Fold every stored row of an experiment that has no mark yet; nothing if another store has marked it
        meanwhile (a concurrent fold conflicts on the mark, and its transaction is rolled back)."""
        if not cur.execute("SELECT 1 FROM rollup_marks WHERE exp_key = ?", [exp_key]).fetchall():
            for statement in self._from_tables:
                cur.execute(statement, {"exp_key": exp_key})

    @staticmethod
    def read(cur: duckdb.DuckDBPyConnection, exp_key: str, until_seconds: int) -> Folded | None:
        """The experiment's sums if they are exactly the window up to `until_seconds` (every row written is in
        it), else None. One statement."""
        found = cur.execute(READ, [exp_key]).fetchall()
        if not found or (found[0][1] is not None and found[0][1] > until_seconds):
            return None
        rows = [row for row in found if row[4] is not None]  # n is None: a mark without sums yet
        return Folded(max_at_s=found[0][1], sums=[row[2:-1] for row in rows], latest=latest_of(rows, 2),
                      exposure_rows=int(found[0][0]))


def latest_of(rows: list[tuple[Any, ...]], arm_at: int) -> dict[str | None, int]:
    """The latest times in a read of the arms' rows (arm at index `arm_at`, metric next, latest last): the rows
    without an arm carry them."""
    return {row[arm_at + 1]: int(row[-1]) for row in rows if row[arm_at] is None and row[-1] is not None}


@dataclass(frozen=True)
class ArmSums:
    """An experiment's running aggregate as read (here or from PostgreSQL's rollup): `sums` rows are (arm,
    metric, *SUMS) as in rollup_arms, `max_at_s` the latest row folded in, `latest` the latest exposure's at_s
    (key None) and each metric's latest event's."""

    max_at_s: int | None
    sums: list[tuple[Any, ...]]
    latest: dict[str | None, int]

    def freshest(self, metrics: list[str]) -> float | None:
        """The statistics' freshness for these metrics (what the freshness query gives): the latest exposure or
        event of one of them."""
        times = [self.latest[key] for key in (None, *metrics) if key in self.latest]
        return float(max(times)) if times else None

    def covariates(self, metrics: list[str]) -> dict[str, int]:
        """The metrics with pre-period rows, and how many (what `local_metrics` asks the tables otherwise)."""
        return {metric: n for arm, metric, n, *_ in self.sums if arm is None and metric in metrics and n > 0}

    def query_rows(self, metrics: list[str], covariates: Collection[str]) -> list[dict[str, Any]]:
        """The sums as the statistics query's rows (see `local_metrics.aggregate_from_rows`): one per arm with
        users, `sum_<i>`/`sum_sq_<i>` for metric i, and the `pre_*_<i>` columns for covariates only."""
        index = {name: i for i, name in enumerate(metrics)}
        by_arm: dict[str, dict[str, Any]] = {}
        for arm, metric, n, s, ss, pn, ps, pss, psp in self.sums:
            if arm is None:
                continue
            row = by_arm.setdefault(arm, {"arm": arm, "n": 0})
            if metric is None:
                row["n"] = n
            elif metric in index:
                i = index[metric]
                row |= {f"sum_{i}": s, f"sum_sq_{i}": ss}
                if metric in covariates:
                    row |= {f"pre_n_{i}": pn, f"pre_sum_{i}": ps, f"pre_sum_sq_{i}": pss, f"pre_sum_product_{i}": psp}
        return [row for row in by_arm.values() if row["n"] > 0]


@dataclass(frozen=True)
class Folded(ArmSums):
    """The embedded store's sums, with the exposure rows folded in (it sizes the query's covariate join)."""

    exposure_rows: int


# --- the fold of a small batch, in Python ints ------------------------------------------------------------------

Key = tuple[str | None, str | None]  # (arm, metric): metric None for the users, arm None for pre-period rows


def micro_units(values: Floats) -> list[int]:
    """`CAST(round(value * 1e6) AS BIGINT)` as DuckDB computes it (the same double product, rounded half away from
    zero), so the Python fold and the SQL agree to the unit."""
    if not np.isfinite(values).all():
        raise ValueError("metric values must be finite numbers")
    scaled = values * VALUE_SCALE
    whole = np.trunc(scaled)
    rounded: list[int] = (whole + np.where(np.abs(scaled - whole) >= 0.5, np.sign(scaled), 0)).astype(np.int64).tolist()
    return rounded


@dataclass
class _Batch:
    """A batch by user: the arm first in name order among its exposures, and per metric the events' sum (dy)
    and the covariate rows' sum (dx, None without one)."""

    arms: dict[str, str] = field(default_factory=dict)
    dy: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    dx: dict[tuple[str, str], int] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: Rows) -> _Batch:
        batch = cls()
        for user, arm in zip(rows.exposures.user_id.tolist(), rows.exposures.arm.tolist(), strict=True):
            batch.arms[user] = min(arm, batch.arms.get(user, arm))
        events, pre = rows.metric_events, rows.pre_period
        for user, metric, value in zip(events.user_id.tolist(), events.metric.tolist(), micro_units(events.value),
                                       strict=True):
            batch.dy[user, metric] += value
        for user, metric, value in zip(pre.user_id.tolist(), pre.metric.tolist(), micro_units(pre.value),
                                       strict=True):
            batch.dx[user, metric] = batch.dx.get((user, metric), 0) + value
        return batch

    def users(self) -> list[str]:
        return sorted({*self.arms, *(user for user, _ in self.dy), *(user for user, _ in self.dx)})


def _plus(x: int | None, dx: int | None) -> int | None:
    return x if dx is None else (dx if x is None else x + dx)


def _contribution(y: int, x: int | None) -> list[int]:
    """What one user's value (and covariate) adds to their arm's sums: s, ss, pn, ps, pss, psp."""
    if x is None:
        return [y, y * y, 0, 0, 0, 0]
    return [y, y * y, 1, x, x * x, x * y]


UserValue = tuple[str, str, int, int | None]  # (user, metric, y, x): a row of rollup_values


@dataclass
class _Changes:
    """What a batch changes: the arms' deltas (in SUMS order) and the rows of rollup_users and rollup_values to
    insert (new) or update (moved, changed)."""

    deltas: dict[Key, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0] * len(SUMS)))
    new_users: list[tuple[str, str | None]] = field(default_factory=list)
    moved: list[tuple[str, str | None]] = field(default_factory=list)
    new_values: list[UserValue] = field(default_factory=list)
    changed: list[UserValue] = field(default_factory=list)

    def user(self, user: str, known: bool, before: str | None, after: str | None) -> None:
        """The user counts in their arm after the batch instead of the one before."""
        if not known:
            self.new_users.append((user, after))
        elif after != before:
            self.moved.append((user, after))
        if before is not None:
            self.deltas[before, None][0] -= 1
        if after is not None:
            self.deltas[after, None][0] += 1

    def value(self, user: str, metric: str, arms: tuple[str | None, str | None], old: tuple[int, int | None] | None,
              dy: int | None, dx: int | None) -> None:
        """The user's value of `metric` (`old`, None if they had none) gains the batch's dy and dx: its old
        contribution leaves their arm before the batch, the new one joins their arm after it (`arms`)."""
        before, after = arms
        y, x = old or (0, None)
        new_y, new_x = y + (dy or 0), _plus(x, dx)
        if old is None:
            self.new_values.append((user, metric, new_y, new_x))
        elif dy is not None or dx is not None:
            self.changed.append((user, metric, new_y, new_x))
        if before is not None:
            _add(self.deltas[before, metric], [0, *_contribution(y, x)], -1)
        if after is not None:
            _add(self.deltas[after, metric], [0, *_contribution(new_y, new_x)], 1)


def _fold_in_python(cur: duckdb.DuckDBPyConnection, exp_key: str, rows: Rows) -> None:
    """The SQL fold's arithmetic on one batch, with the touched users' state read in one statement (their ids
    bound the scan, so the zonemaps skip most of a large store) and written back in a few."""
    _write_mark(cur, exp_key, rows)
    batch = _Batch.of(rows)
    users = batch.users()
    old_arm, old = _read_users(cur, exp_key, users)
    metrics_of: dict[str, set[str]] = defaultdict(set)
    for user, metric in [*old, *batch.dy, *batch.dx]:
        metrics_of[user].add(metric)
    changes = _Changes()
    for user in users:
        before = old_arm.get(user)
        after = min((arm for arm in (before, batch.arms.get(user)) if arm is not None), default=None)
        for metric in metrics_of[user]:
            changes.value(user, metric, (before, after), old.get((user, metric)), batch.dy.get((user, metric)),
                          batch.dx.get((user, metric)))
        changes.user(user, user in old_arm, before, after)
    for metric in rows.pre_period.metric.tolist():
        changes.deltas[None, metric][0] += 1
    _write_arms(cur, exp_key, changes.deltas, _latest(rows))
    _write_users(cur, exp_key, changes.new_users, changes.moved)
    _write_values(cur, exp_key, changes.new_values, changes.changed)


def _write_mark(cur: duckdb.DuckDBPyConnection, exp_key: str, rows: Rows) -> None:
    times = [int(a.max()) for a in (rows.exposures.at_s, rows.metric_events.at_s) if len(a)]
    mark = {"exp_key": exp_key, "exposures": len(rows.exposures.user_id), "latest": max(times) if times else None}
    if not cur.execute(_UPDATE_MARK, mark).fetchall():  # an UPDATE costs less than an upsert
        cur.execute("INSERT INTO rollup_marks VALUES ($exp_key, $exposures, $latest)", mark)


def _read_users(cur: duckdb.DuckDBPyConnection, exp_key: str, users: list[str]
                ) -> tuple[dict[str, str | None], dict[tuple[str, str], tuple[int, int | None]]]:
    """The stored state of `users` (sorted): each known user's arm, and their values' (y, x) by (user, metric)."""
    bounds = {"exp_key": exp_key, "ids": users, "lo": users[0], "hi": users[-1]}
    old_arm: dict[str, str | None] = {}
    old: dict[tuple[str, str], tuple[int, int | None]] = {}
    for user, arm, metric, y, x in cur.execute(_READ_USERS, bounds).fetchall():
        old_arm[user] = arm
        if metric is not None:
            old[user, metric] = (int(y), None if x is None else int(x))
    return old_arm, old


def _add(total: list[int], terms: list[int], sign: int) -> None:
    for i, term in enumerate(terms):
        total[i] += sign * term


def _latest(rows: Rows) -> dict[Key, int]:
    """The batch's latest exposure (key (None, None)) and each metric's latest event (key (None, metric))."""
    latest: dict[Key, int] = {}
    if len(rows.exposures.at_s):
        latest[None, None] = int(rows.exposures.at_s.max())
    for metric, at_s in zip(rows.metric_events.metric.tolist(), rows.metric_events.at_s.tolist(), strict=True):
        latest[None, metric] = max(at_s, latest.get((None, metric), at_s))
    return latest


def _write_arms(cur: duckdb.DuckDBPyConnection, exp_key: str, deltas: dict[Key, list[int]],
                latest: dict[Key, int]) -> None:
    """Replace the experiment's sums with sums plus deltas, and its latest times with the later of old and new:
    a DELETE that returns them and an INSERT, cheaper in DuckDB than an UPDATE joined to the deltas."""
    totals: dict[Key, list[int]] = {}
    latest_after = dict(latest)
    for arm, metric, *sums, at_s in cur.execute(
            f"DELETE FROM rollup_arms WHERE exp_key = ? RETURNING arm, metric, {', '.join(SUMS)}, latest",
            [exp_key]).fetchall():
        totals[arm, metric] = list(sums)
        if at_s is not None:
            latest_after[arm, metric] = max(at_s, latest_after.get((arm, metric), at_s))
    for key, delta in deltas.items():
        _add(totals.setdefault(key, [0] * len(SUMS)), delta, 1)
    for key in latest_after:
        totals.setdefault(key, [0] * len(SUMS))
    cur.execute(_INSERT_ARMS, _arm_columns(exp_key, totals, latest_after))


def _arm_columns(exp_key: str, sums: dict[Key, list[int]], latest: dict[Key, int]) -> dict[str, object]:
    """Sums as list parameters, one list a column (as text: a sum of squares can outgrow 64 bits)."""
    keys = list(sums)
    return {"exp_key": exp_key, "arm": [arm for arm, _ in keys], "metric": [metric for _, metric in keys],
            **{name: [str(sums[key][i]) for key in keys] for i, name in enumerate(SUMS)},
            "latest": [latest.get(key) for key in keys]}


def _write_users(cur: duckdb.DuckDBPyConnection, exp_key: str, new: list[tuple[str, str | None]],
                 moved: list[tuple[str, str | None]]) -> None:
    if new:
        cur.execute("INSERT INTO rollup_users SELECT $exp_key, unnest($ids), unnest($arms)",
                    {"exp_key": exp_key, "ids": [user for user, _ in new], "arms": [arm for _, arm in new]})
    if moved:
        cur.execute("UPDATE rollup_users SET arm = d.arm FROM (SELECT unnest($ids) AS user_id, unnest($arms) AS arm) "
                    "AS d WHERE rollup_users.exp_key = $exp_key AND rollup_users.user_id = d.user_id",
                    {"exp_key": exp_key, "ids": [user for user, _ in moved], "arms": [arm for _, arm in moved]})


def _write_values(cur: duckdb.DuckDBPyConnection, exp_key: str, new: list[UserValue],
                  changed: list[UserValue]) -> None:
    def columns(values: list[UserValue]) -> dict[str, object]:
        return {"exp_key": exp_key, "ids": [v[0] for v in values], "metrics": [v[1] for v in values],
                "y": [str(v[2]) for v in values], "x": [None if v[3] is None else str(v[3]) for v in values]}

    if new:
        cur.execute("INSERT INTO rollup_values SELECT $exp_key, unnest($ids), unnest($metrics), "
                    "CAST(unnest($y) AS HUGEINT), CAST(unnest($x) AS HUGEINT)", columns(new))
    if changed:
        cur.execute("UPDATE rollup_values SET y = d.y, x = d.x FROM (SELECT unnest($ids) AS user_id, unnest($metrics) "
                    "AS metric, CAST(unnest($y) AS HUGEINT) AS y, CAST(unnest($x) AS HUGEINT) AS x) AS d WHERE "
                    "rollup_values.exp_key = $exp_key AND rollup_values.user_id = d.user_id AND "
                    "rollup_values.metric = d.metric", columns(changed))


_UPDATE_MARK = """
UPDATE rollup_marks SET exposure_rows = exposure_rows + $exposures, max_at_s = greatest(max_at_s, $latest)
WHERE exp_key = $exp_key RETURNING exp_key"""
_READ_USERS = """
SELECT u.user_id, u.arm, v.metric, v.y, v.x
FROM rollup_users AS u LEFT JOIN rollup_values AS v
     ON v.exp_key = $exp_key AND v.user_id = u.user_id AND v.user_id BETWEEN $lo AND $hi
WHERE u.exp_key = $exp_key AND u.user_id BETWEEN $lo AND $hi AND u.user_id IN (SELECT unnest($ids))"""
_SUM_TYPES = ("BIGINT", "HUGEINT", "HUGEINT", "BIGINT", "HUGEINT", "HUGEINT", "HUGEINT")  # as in rollup_arms
_INSERT_ARMS = ("INSERT INTO rollup_arms SELECT $exp_key, unnest($arm), unnest($metric), "
                + ", ".join(f"CAST(unnest(${name}) AS {kind})" for name, kind in zip(SUMS, _SUM_TYPES, strict=True))
                + ", CAST(unnest($latest) AS INTEGER)")
