"""The incremental rollup: three append-only tables in the warehouse that a refresh advances from a watermark, so
a check costs what its new rows cost. The same statements run on every engine (no UPDATE, MERGE or DELETE, which
ClickHouse and plain Spark tables lack).

A refresh reads the rows loaded since the last one (`loaded_at` past each source's watermark, whatever their event
time: late rows are folded in like any other), and each touched user's state so far from `users` (an additive
ledger: their arm is the least of their rows' arms, each metric's total the sum of their rows'). It appends to
`sums` each arm's change (the users' new contributions minus their old ones), to `users` the batch's rows, and
last to `marks` one row per source with the new watermark: the commit. Every read takes only attempts that have a
mark, and for a refresh number marked twice (two attempts raced) the least attempt id, so a refresh that died
half-way, or lost a race, is never counted. The per-arm sums are then the sum of `sums`: a few rows per refresh.
"""

from __future__ import annotations

from dataclasses import dataclass

from abrollout.warehouse.dialects import EXACT, placeholder, string
from abrollout.warehouse.layout import Layout
from abrollout.warehouse.scans import covariate_scan, exposure_scan, metric_scan, select
from abrollout.warehouse.statistics import sum_terms

ROLLUP, ATTEMPT, REFRESH = placeholder("abr_rollup"), placeholder("abr_attempt"), placeholder("abr_refresh")
LOW, HIGH = placeholder("abr_lo"), placeholder("abr_hi")
PARENT, CHAIN = placeholder("abr_parent"), placeholder("abr_chain")
NO_ATTEMPT = ""
"""The parent of a rollup's first refresh, and the one member every chain has (so `IN (...)` is never empty)."""

SUM_COLUMNS = ("s", "ss", "ps", "pss", "psp", "ds", "dss", "dsp")
"""The exact sums a `sums` row carries, in the order of `_TERMS`."""
_TERMS = ("sum", "sum_sq", "pre_sum", "pre_sum_sq", "pre_sum_product", "denom_sum", "denom_sum_sq", "denom_sum_product")


@dataclass(frozen=True)
class Table:
    """One of the rollup's tables: its name and columns (types in the source dialect), the columns an engine should
    order or index it by, and other column lists it is looked up by (worth an index where the engine has them)."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    lookups: tuple[tuple[str, ...], ...] = ()

    def create(self) -> str:
        body = ", ".join(f"{column} {kind}" for column, kind in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({body})"


def tables(prefix: str) -> tuple[Table, Table, Table]:
    """marks, users and sums, named `prefix` + kind."""
    text, whole = "VARCHAR NOT NULL", "BIGINT NOT NULL"
    marks = Table(prefix + "marks", (("rollup_key", text), ("refresh_no", whole), ("attempt", text),
                                     ("parent", text), ("source", text), ("loaded_hi", whole)),
                  ("rollup_key", "refresh_no"))
    users = Table(prefix + "users", (("rollup_key", text), ("attempt", text), ("user_id", text), ("arm", text),
                                     ("metric", text), ("y", whole), ("x", whole), ("nx", whole), ("t", "BIGINT")),
                  ("rollup_key", "user_id"), lookups=(("rollup_key", "attempt"),))
    sums = Table(prefix + "sums", (("rollup_key", text), ("attempt", text), ("arm", text), ("metric", text),
                                   ("n", whole), ("pn", whole),
                                   *((column, f"{EXACT} NOT NULL") for column in SUM_COLUMNS), ("latest", "BIGINT")),
                 ("rollup_key", "arm", "metric"))
    return marks, users, sums


@dataclass(frozen=True)
class RollupStatements:
    """The refresh's and the read's statements for one layout, with placeholders: `abr_rollup` (the rollup's key),
    `abr_key` (the experiment), `abr_attempt`, `abr_refresh`, `abr_parent`, `abr_chain` (the attempts that count,
    a list), and per source `abr_w_<id>` / `abr_h_<id>` (the watermark and the high mark the refresh reads up to)."""

    layout: Layout
    prefix: str = "abrollout_rollup_"

    @property
    def sources(self) -> tuple[str, ...]:
        """The ids of the sources the rollup reads: `e` (exposures), then each metric and covariate scan."""
        return ("e", *(scan.sid for scan in self.layout.scans), *(scan.sid for scan in self.layout.covariate_scans))

    def marks(self) -> str:
        """Every commit of the rollup (columns refresh_no, attempt, parent, source, loaded_hi): a few rows per
        refresh, from which `committed_chain` picks the attempts that count."""
        marks = tables(self.prefix)[0].name
        return f"SELECT refresh_no, attempt, parent, source, loaded_hi\nFROM {marks}\nWHERE rollup_key = {ROLLUP}"

    def highs(self) -> str:
        """Each source's latest `loaded_at` past its watermark (NULL when nothing new): columns source, hi."""
        layout = self.layout
        branches = [select([f"{string('e')} AS source", f"MAX({layout.expr(_loaded(layout.catalog.exposures))}) AS hi"],
                           layout.origin(layout.catalog.exposures),
                           [*layout.experiment(layout.catalog.exposures),
                            f"{layout.expr(_loaded(layout.catalog.exposures))} > {placeholder('abr_w_e')}"])]
        for scan in (*layout.scans, *layout.covariate_scans):
            loaded = layout.expr(_loaded(scan.source))
            branches.append(select([f"{string(scan.sid)} AS source", f"MAX({loaded}) AS hi"],
                                   layout.origin(scan.source),
                                   [*layout.experiment(scan.source), f"{loaded} > {placeholder('abr_w_' + scan.sid)}"]))
        return "\nUNION ALL\n".join(branches)

    def _window(self, sid: str, ts: str) -> list[str]:
        layout = self.layout
        source = layout.catalog.exposures if sid == "e" else next(
            scan.source for scan in (*layout.scans, *layout.covariate_scans) if scan.sid == sid)
        loaded = layout.expr(_loaded(source))
        return [f"{loaded} > {placeholder('abr_w_' + sid)}", f"{loaded} <= {placeholder('abr_h_' + sid)}"]

    def _batch(self) -> str:
        """The named subqueries the stage starts from: b_<source> (each source's new rows per user) and batch (one
        row per touched user: the least new arm and latest exposure, and per metric the new y, latest time t, x and
        nx)."""
        layout = self.layout
        ctes = [("b_e", exposure_scan(layout, self._window))]
        ctes += [(f"b_{scan.sid}", metric_scan(layout, scan, self._window)) for scan in layout.scans]
        ctes += [(f"b_{scan.sid}", covariate_scan(layout, scan, self._window)) for scan in layout.covariate_scans]
        columns = ["arm", "latest", *(f"t{i}" for i in range(len(layout.metrics))), *self._state_columns()[1:]]
        branches = [_branch("b_e", {"arm": "arm", "latest": "latest"}, columns)]
        branches += [_branch(f"b_{scan.sid}", {f"{c}{i}": f"{c}{i}" for i in scan.members for c in ("y", "t")},
                             columns) for scan in layout.scans]
        branches += [_branch(f"b_{scan.sid}", {f"{c}{i}": f"{c}{i}" for i in scan.members for c in ("x", "nx")},
                             columns) for scan in layout.covariate_scans]
        union = "\nUNION ALL\n".join(branches)
        pivot = ", ".join([*(f"{'MIN' if c == 'arm' else 'MAX' if c[0] in 'lt' else 'SUM'}({c}) AS {c}"
                             for c in columns)])
        ctes.append(("batch", f"SELECT user_id, {pivot}\nFROM (\n{union}\n) AS batch_rows\nGROUP BY user_id"))
        return ",\n".join(f"{name} AS (\n{body}\n)" for name, body in ctes)

    def _values(self) -> list[tuple[str, int]]:
        """A user's summed values as (kind, metric index): y per metric, x and nx per covariate."""
        covariates = sorted(i for scan in self.layout.covariate_scans for i in scan.members)
        values = [("y", i) for i in range(len(self.layout.metrics))]
        return values + [(c, i) for i in covariates for c in ("x", "nx")]

    def _state_columns(self) -> list[str]:
        """A user's state as columns: arm, then `_values`."""
        return ["arm", *(f"{kind}{i}" for kind, i in self._values())]

    def fold_sums(self) -> str:
        """Append each arm's change to `sums`, computed from the rows `fold_users` staged under this attempt and
        the touched users' state before it, and each source's latest time and covariate rows (rows with arm '').
        `abr_lo`/`abr_hi` are the staged users' least and greatest ids (`bounds`): written in as constants they let
        every engine skip the ledger's blocks outside them, which a join's own estimates often do not."""
        layout, (_, users, sums) = self.layout, tables(self.prefix)
        columns = self._state_columns()
        pivot = ", ".join(["MIN(NULLIF(arm, '')) AS arm", *(
            f"SUM(CASE WHEN metric = {string(layout.metrics[i])} THEN {kind} END) AS {kind}{i}"
            for kind, i in self._values())])
        moved = ["batch.user_id", "old.arm AS old_arm",
                 "CASE WHEN old.arm IS NULL THEN batch.arm WHEN batch.arm IS NULL OR old.arm <= batch.arm "
                 "THEN old.arm ELSE batch.arm END AS new_arm"]
        for c in columns[1:]:
            moved += [f"COALESCE(old.{c}, 0) AS o{c}", f"COALESCE(old.{c}, 0) + COALESCE(batch.{c}, 0) AS n{c}"]
        contributions = [self._terms("new_arm", "1", "n"), self._terms("old_arm", "-1", "o")]
        per_arm = ["arm", "SUM(sign) AS n"]
        for i in range(len(layout.metrics)):
            terms = sum_terms(layout, i, "v{i}", "x{i}")
            per_arm += [f"COALESCE(SUM(sign * {term}), 0) AS {name}" for name, term in terms]
            if layout.definitions[i].covariate is not None:
                per_arm.append(f"SUM(CASE WHEN x{i} IS NULL THEN 0 ELSE sign END) AS pre_n_{i}")
        rows = [_sums_row("''", "''", "0", "0", [], "MAX(t)", "staged WHERE metric = ''"),
                _sums_row("arm", "''", "n", "0", [], None, "deltas")]
        for i, metric in enumerate(layout.metrics):
            names = [f"{term}_{i}" for term in _TERMS]
            present = {name for name, _ in sum_terms(layout, i, "v{i}", "x{i}")}
            pn = f"pre_n_{i}" if layout.definitions[i].covariate is not None else "0"
            rows.append(_sums_row("arm", string(metric), "0", pn, [n if n in present else "0" for n in names], None,
                                  "deltas"))
        rows += [_sums_row("''", string(metric), "0", "COALESCE(SUM(nx), 0)", [], "MAX(t)",
                           f"staged WHERE metric = {string(metric)}") for metric in layout.metrics]
        union = "\nUNION ALL\n".join(rows)
        ledger = f"FROM {users.name}\nWHERE rollup_key = {ROLLUP} AND "
        return (f"INSERT INTO {sums.name}\n"
                f"WITH staged AS (\nSELECT *\n{ledger}attempt = {ATTEMPT}\n),\n"
                f"batch AS (\nSELECT user_id, {pivot}\nFROM staged\nGROUP BY user_id\n),\n"
                f"old AS (\nSELECT user_id, {pivot}\n{ledger}attempt IN ({CHAIN}) AND user_id >= "
                f"{LOW} AND user_id <= {HIGH} AND user_id IN (SELECT user_id FROM staged)\nGROUP BY user_id\n),\n"
                f"moved AS (\nSELECT {', '.join(moved)}\nFROM batch LEFT JOIN old ON old.user_id = batch.user_id\n),\n"
                f"terms AS (\n{contributions[0]}\nUNION ALL\n{contributions[1]}\n),\n"
                f"deltas AS (\nSELECT {', '.join(per_arm)}\nFROM terms\nGROUP BY arm\n)\n{union}")

    def _terms(self, arm: str, sign: str, state: str) -> str:
        """The users' contributions in `arm` (new_arm or old_arm) from their `state` (n: new, o: old) columns."""
        layout = self.layout
        columns = [f"{arm} AS arm", f"{sign} AS sign"]
        covariates = {i for scan in layout.covariate_scans for i in scan.members}
        for i in range(len(layout.metrics)):
            columns.append(f"{layout.value(i, f'{state}y{i}')} AS v{i}")
            if i in covariates:
                columns.append(f"CASE WHEN {state}nx{i} > 0 THEN {state}x{i} END AS x{i}")
        return f"SELECT {', '.join(columns)}\nFROM moved\nWHERE {arm} IS NOT NULL"

    def fold_users(self) -> str:
        """Stage the batch in the `users` ledger under this attempt (not counted until its mark): each touched
        user's new arm and latest exposure (metric ''), and per metric their new rows' y, latest time, x and nx. In
        user order, so that where ids grow with time (as in most logs) a later lookup of the users a refresh
        touches skips the ledger's older blocks by their min/max."""
        layout, users = self.layout, tables(self.prefix)[1]
        covariates = {i for scan in layout.covariate_scans for i in scan.members}
        rows = [_row(users, [ROLLUP, ATTEMPT, "user_id", "arm", "''", "0", "0", "0", "latest"],
                     "batch WHERE latest IS NOT NULL")]
        for i, metric in enumerate(layout.metrics):
            x, nx = (f"COALESCE(x{i}, 0)", f"COALESCE(nx{i}, 0)") if i in covariates else ("0", "0")
            present = f"y{i} IS NOT NULL" + (f" OR nx{i} > 0" if i in covariates else "")
            rows.append(_row(users, [ROLLUP, ATTEMPT, "user_id", "''", string(metric), f"COALESCE(y{i}, 0)", x, nx,
                                     f"t{i}"], f"batch WHERE {present}"))
        union = "\nUNION ALL\n".join(rows)
        return f"INSERT INTO {users.name}\nWITH {self._batch()}\n{union}\nORDER BY 3"

    def bounds(self) -> str:
        """The staged users' least and greatest ids (columns lo, hi; NULL when nothing was staged)."""
        users = tables(self.prefix)[1].name
        return (f"SELECT MIN(user_id) AS lo, MAX(user_id) AS hi\nFROM {users}\n"
                f"WHERE rollup_key = {ROLLUP} AND attempt = {ATTEMPT}")

    def mark(self, sources: tuple[str, ...]) -> str:
        """The commit: one marks row per source, at its high mark."""
        marks = tables(self.prefix)[0].name
        rows = [_row(tables(self.prefix)[0], [ROLLUP, REFRESH, ATTEMPT, PARENT, string(sid),
                                              placeholder("abr_h_" + sid)]) for sid in sources]
        return f"INSERT INTO {marks}\n" + "\nUNION ALL\n".join(rows)

    def read(self) -> str:
        """The rollup's per-arm sums (columns arm, metric, n, pn, the sums as text, latest), arm '' carrying each
        source's latest time."""
        sums = tables(self.prefix)[2].name
        columns = ["arm", "metric", "SUM(n) AS n", "SUM(pn) AS pn",
                   *(f"CAST(SUM({c}) AS VARCHAR) AS {c}" for c in SUM_COLUMNS), "MAX(latest) AS latest"]
        return (f"SELECT {', '.join(columns)}\nFROM {sums}\nWHERE rollup_key = {ROLLUP} AND attempt IN ({CHAIN})\n"
                "GROUP BY arm, metric\nORDER BY arm, metric")


@dataclass(frozen=True)
class Commit:
    """One refresh's mark: its number, attempt, the attempt it was built on, and each source's watermark."""

    refresh_no: int
    attempt: str
    parent: str
    watermarks: dict[str, int]


def committed_chain(marks: list[dict[str, object]]) -> list[Commit]:
    """The refreshes that count, newest first: from the head (the highest refresh number; between attempts that
    raced to it, the least id) back through each one's parent. An attempt that lost a race, or whose rival was
    built on first, is on no chain; every reader picks the same chain from the same marks, and each chain is one
    consistent fold of the rows up to its head's watermarks."""
    commits: dict[str, Commit] = {}
    for row in marks:
        attempt = str(row["attempt"])
        commit = commits.setdefault(attempt, Commit(int(str(row["refresh_no"])), attempt, str(row["parent"]), {}))
        commit.watermarks[str(row["source"])] = int(str(row["loaded_hi"]))
    if not commits:
        return []
    head = min(commits.values(), key=lambda c: (-c.refresh_no, c.attempt))
    chain = [head]
    while chain[-1].parent in commits:
        chain.append(commits[chain[-1].parent])
    return chain


def _loaded(source: object) -> str:
    loaded = getattr(source, "loaded_at", None)
    assert loaded is not None, "the rollup reads only sources with loaded_at (Layout.incremental)"
    return str(loaded)


def _branch(cte: str, provided: dict[str, str], columns: list[str]) -> str:
    """One source's users as the batch's columns: its own values, typed NULLs for the rest."""
    def value(column: str) -> str:
        if column in provided:
            return f"CAST({provided[column]} AS BIGINT)" if column[0] in "lt" else provided[column]
        return "CAST(NULL AS VARCHAR)" if column == "arm" else "CAST(NULL AS BIGINT)"

    values = [f"{value(c)} AS {c}" for c in columns]
    return f"SELECT user_id, {', '.join(values)} FROM {cte}"


def _sums_row(arm: str, metric: str, n: str, pn: str, sums: list[str], latest: str | None, origin: str) -> str:
    """One `sums` row per group of `origin`: the rollup key and attempt, arm, metric, n, pn, the exact sums (0 when
    not given), latest."""
    exact = [f"CAST({value} AS {EXACT})" for value in (sums or ["0"] * len(SUM_COLUMNS))]
    values = [ROLLUP, ATTEMPT, arm, metric, n, pn, *exact, latest or "CAST(NULL AS BIGINT)"]
    return _row(tables("")[2], values, origin)


def _row(table: Table, values: list[str], origin: str = "") -> str:
    """A SELECT of one row of `table` per row of `origin`, each value named as its column (ClickHouse refuses a
    union whose unnamed literals share a name)."""
    named = ", ".join(f"{value} AS {column}" for value, (column, _) in zip(values, table.columns, strict=True))
    return f"SELECT {named}" + (f" FROM {origin}" if origin else "")
