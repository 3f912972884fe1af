"""The engines of the warehouses that cannot run here (BigQuery, Snowflake, Trino, Redshift): what can be known
without the vendor. The DDL each sends for the rollup parses in its dialect and has that warehouse's needs; rows
come back keyed by lowercase column names; a missing client names its pip extra. Their statements are the
generator's, frozen in golden/ (test_golden_sql.py)."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from abrollout.warehouse.rollup import Table, tables
from adapters.protocols import AdapterConfigError
from adapters.warehouse.vendors import (
    CLIENTS,
    BigQueryEngine,
    DbApiEngine,
    RedshiftEngine,
    SnowflakeEngine,
    TrinoEngine,
    client,
)

TABLES = tables("abrollout_rollup_")


class Cursor:
    """A DB-API cursor over canned rows that records what it is sent and what is read from it."""

    def __init__(self, con: Connection) -> None:
        self.con = con
        self.description: list[tuple[str, ...]] | None = None

    def execute(self, sql: str) -> None:
        self.con.log.append(("execute", sql))
        self.description = [(name,) for name in self.con.columns]

    def fetchall(self) -> list[tuple[Any, ...]]:
        self.con.log.append(("fetchall", ""))
        return self.con.rows

    def close(self) -> None:
        self.con.log.append(("close", ""))


class Connection:
    def __init__(self, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        self.columns, self.rows = columns, rows
        self.log: list[tuple[str, str]] = []

    def cursor(self) -> Cursor:
        return Cursor(self)

    def close(self) -> None:
        self.log.append(("closed", ""))


@pytest.mark.parametrize("engine", ["bigquery", "snowflake", "trino", "redshift"])
def test_a_missing_client_names_the_pip_extra(engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, CLIENTS[engine][0], None)  # as if not installed, whatever this venv has
    with pytest.raises(AdapterConfigError, match=rf"needs the {CLIENTS[engine][1]} client.*"
                                                 rf"pip install 'abrollout\[{engine}\]'"):
        client(engine)


@pytest.mark.parametrize("engine", [BigQueryEngine(None, "analytics"), SnowflakeEngine(None), TrinoEngine(None),
                                    RedshiftEngine(None)], ids=lambda e: e.name)
def test_the_rollup_ddl_parses_in_its_own_dialect_and_keeps_every_column(engine: Any) -> None:
    for table in TABLES:
        tree = sqlglot.parse_one(engine.rollup_ddl(table), read=engine.dialect)
        assert isinstance(tree, exp.Create) and tree.args.get("exists")
        assert [column.name for column in tree.find_all(exp.ColumnDef)] == [c for c, _ in table.columns]


def test_bigquery_names_the_dataset_clusters_on_the_key_and_holds_sums_in_bignumeric() -> None:
    engine = BigQueryEngine(None, "analytics")
    marks, _, sums = TABLES
    ddl = engine.rollup_ddl(sums)
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS analytics.abrollout_rollup_sums (")
    assert ddl.endswith("\nCLUSTER BY rollup_key, arm, metric")
    assert "  s BIGNUMERIC NOT NULL," in ddl and "NUMERIC(" not in ddl  # NUMERIC(38, 0) is refused: 29 digits
    schema_prefixed = Table("reporting.abrollout_rollup_marks", marks.columns, marks.key)
    assert "EXISTS reporting.abrollout_rollup_marks (" in engine.rollup_ddl(schema_prefixed)


def test_redshift_sorts_each_table_on_its_key() -> None:
    assert [RedshiftEngine(None).rollup_ddl(t).rsplit("\n", 1)[1] for t in TABLES] == [
        "COMPOUND SORTKEY (rollup_key, refresh_no)", "COMPOUND SORTKEY (rollup_key, user_id)",
        "COMPOUND SORTKEY (rollup_key, arm, metric)"]


def test_trino_leaves_not_null_out_and_snowflake_keeps_plain_tables() -> None:
    assert "NOT NULL" not in TrinoEngine(None).rollup_ddl(TABLES[2])
    assert "NOT NULL" in SnowflakeEngine(None).rollup_ddl(TABLES[2])
    assert "CLUSTER" not in SnowflakeEngine(None).rollup_ddl(TABLES[2])


def test_rows_are_keyed_by_lowercase_column_names() -> None:
    """Snowflake answers `SELECT arm, COUNT(*) AS n` with columns ARM and N; the results read arm and n."""
    con = Connection(["ARM", "N"], [("control", 3), ("t1", 4)])
    assert SnowflakeEngine(con).query("SELECT arm, COUNT(*) AS n FROM t GROUP BY arm") == [
        {"arm": "control", "n": 3}, {"arm": "t1", "n": 4}]
    assert con.log == [("execute", "SELECT arm, COUNT(*) AS n FROM t GROUP BY arm"), ("fetchall", ""),
                       ("close", "")]


def test_trino_reads_a_statement_to_its_end_before_it_counts_as_run() -> None:
    trino, other = Connection([], []), Connection([], [])
    TrinoEngine(trino).execute("INSERT INTO t SELECT 1")
    RedshiftEngine(other).execute("INSERT INTO t SELECT 1")
    assert [step for step, _ in trino.log] == ["execute", "fetchall", "close"]
    assert [step for step, _ in other.log] == ["execute", "close"]


def test_create_rollup_sends_each_tables_ddl_and_close_closes() -> None:
    con = Connection([], [])
    engine: DbApiEngine = RedshiftEngine(con)
    engine.create_rollup(TABLES)
    engine.close()
    assert [sql for step, sql in con.log if step == "execute"] == [engine.rollup_ddl(t) for t in TABLES]
    assert con.log[-1] == ("closed", "")
