"""BigQuery, Snowflake, Trino and Redshift as engines, each through its vendor's own client.

None of them can run here (no account, no server): their SQL is the generator's, kept as golden files and parsed
back in each dialect (tests/abrollout/warehouse/test_golden_sql.py), and what these classes add (the rollup's DDL,
how a statement is sent and its rows read) is unit-tested with the client replaced. The client is imported when an
engine is built, so a worker installs only the one it uses (`pip install 'abrollout[<warehouse>]'`).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import sqlglot
from sqlglot import exp

from abrollout.warehouse.dialects import render, sqlglot_dialect
from abrollout.warehouse.rollup import Table
from adapters.protocols import AdapterConfigError
from adapters.warehouse.engine import Row

CLIENTS = {
    "bigquery": ("google.cloud.bigquery", "google-cloud-bigquery"),
    "snowflake": ("snowflake.connector", "snowflake-connector-python"),
    "trino": ("trino.dbapi", "trino"),
    "redshift": ("redshift_connector", "redshift_connector"),
}
"""Engine name -> (the module imported, the PyPI package); the pip extra is the engine's name."""


def client(engine: str) -> ModuleType:
    """The vendor's client module; AdapterConfigError naming the pip extra when it is not installed."""
    module, package = CLIENTS[engine]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise AdapterConfigError(f"metrics = {engine} needs the {package} client, which is not installed: "
                                 f"pip install 'abrollout[{engine}]'") from None


def _edited_ddl(table: Table, dialect: str, edit: Callable[[exp.Expression], exp.Expression]) -> str:
    """The table's CREATE statement in `dialect`, each node replaced by what `edit` makes of it."""
    tree = sqlglot.parse_one(render(table.create(), dialect, {}), read=sqlglot_dialect(dialect))
    return tree.transform(edit).sql(sqlglot_dialect(dialect), pretty=True)


class DbApiEngine:
    """A DB-API 2 connection as an engine: one statement at a time (a connection is not safe to share between
    threads in every driver), column names lowercased (Snowflake returns unquoted names in upper case)."""

    name = dialect = ""

    def __init__(self, connection: Any) -> None:
        self._con = connection
        self._lock = threading.Lock()

    def query(self, sql: str) -> list[Row]:
        with self._lock:
            cur = self._con.cursor()
            try:
                cur.execute(sql)
                rows = cur.fetchall()
                columns = [str(column[0]).lower() for column in cur.description or ()]
            finally:
                cur.close()
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def execute(self, sql: str) -> None:
        with self._lock:
            cur = self._con.cursor()
            try:
                cur.execute(sql)
                self._finish(cur)
            finally:
                cur.close()

    def _finish(self, cur: Any) -> None:
        """Whatever the driver needs before a statement without rows has run to its end."""

    def create_rollup(self, tables: Sequence[Table]) -> None:
        for table in tables:
            self.execute(self.rollup_ddl(table))

    def rollup_ddl(self, table: Table) -> str:
        return render(table.create(), self.dialect, {})

    def close(self) -> None:
        self._con.close()


class SnowflakeEngine(DbApiEngine):
    """Snowflake via snowflake-connector-python (not run here: no account). Plain tables for the rollup: Snowflake
    prunes micro-partitions by itself, and a clustering key would spend credits re-clustering tables that small.
    Source tables created without quotes are stored in upper case, so the catalog names them that way."""

    name = dialect = "snowflake"

    @classmethod
    def connect(cls, *, account: str, user: str, warehouse: str | None, database: str | None, schema: str | None,
                role: str | None, password: str | None = None, private_key_pem: str | None = None
                ) -> SnowflakeEngine:
        """Password or key-pair authentication (the unencrypted PKCS#8 PEM text); every statement is tagged
        `abrollout` in the query history."""
        connector = client("snowflake")
        secret: dict[str, Any] = {"password": password}
        if private_key_pem is not None:  # cryptography comes with the connector
            serialization = importlib.import_module("cryptography.hazmat.primitives.serialization")
            secret = {"private_key": serialization.load_pem_private_key(private_key_pem.encode(), password=None)}
        settings = {"warehouse": warehouse, "database": database, "schema": schema, "role": role}
        connection = connector.connect(account=account, user=user, **secret,
                                       **{k: v for k, v in settings.items() if v is not None},
                                       session_parameters={"QUERY_TAG": "abrollout"})
        return cls(connection)


class TrinoEngine(DbApiEngine):
    """Trino via its `trino` client (not run here: no cluster). The rollup's tables are created without NOT NULL,
    which Hive and several other connectors refuse ("does not support non-null column") and nothing relies on."""

    name = dialect = "trino"

    @classmethod
    def connect(cls, *, host: str, port: int, user: str, catalog: str, schema: str, http_scheme: str,
                password: str | None = None) -> TrinoEngine:
        """Basic authentication when a password is given (Trino accepts it over https only)."""
        dbapi = client("trino")
        auth = None
        if password is not None:
            auth = importlib.import_module("trino.auth").BasicAuthentication(user, password)
        return cls(dbapi.connect(host=host, port=port, user=user, catalog=catalog, schema=schema,
                                 http_scheme=http_scheme, auth=auth))

    def _finish(self, cur: Any) -> None:
        """Trino runs a statement as its results are fetched: an INSERT is done only once they are read."""
        cur.fetchall()

    def rollup_ddl(self, table: Table) -> str:
        def nullable(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.ColumnDef):
                kept = [c for c in node.constraints if not isinstance(c.kind, exp.NotNullColumnConstraint)]
                return exp.ColumnDef(this=node.this, kind=node.kind, constraints=kept)
            return node

        return _edited_ddl(table, self.dialect, nullable)


class RedshiftEngine(DbApiEngine):
    """Amazon Redshift via redshift_connector (not run here: no cluster). Each rollup table is sorted on its key
    (a compound sort key), so the reads of one rollup's rows skip the other experiments' blocks."""

    name = dialect = "redshift"

    @classmethod
    def connect(cls, *, host: str, port: int, database: str, user: str, password: str) -> RedshiftEngine:
        connection = client("redshift").connect(host=host, port=port, database=database, user=user,
                                                password=password)
        connection.autocommit = True  # every statement of a refresh commits on its own, as on the other engines
        return cls(connection)

    def rollup_ddl(self, table: Table) -> str:
        return f"{super().rollup_ddl(table)}\nCOMPOUND SORTKEY ({', '.join(table.key)})"


class BigQueryEngine:
    """BigQuery via google-cloud-bigquery (not run here: no project). Statements run with the dataset as their
    default, so the catalog's and the rollup's unqualified table names are the dataset's; the rollup's DDL names
    the dataset itself, clusters each table on its key, and holds the exact sums in BIGNUMERIC (NUMERIC keeps 29
    integer digits, the sums of squares need 38)."""

    name = dialect = "bigquery"

    def __init__(self, bq: Any, dataset: str) -> None:
        self._client, self.dataset = bq, dataset

    @classmethod
    def connect(cls, *, project: str, dataset: str, location: str | None = None) -> BigQueryEngine:
        """Credentials are Google's application default ones (GOOGLE_APPLICATION_CREDENTIALS, or the metadata
        server), never the config file."""
        return cls(client("bigquery").Client(project=project, location=location), dataset)

    def _run(self, sql: str) -> Any:
        bigquery = client("bigquery")
        config = bigquery.QueryJobConfig(default_dataset=f"{self._client.project}.{self.dataset}")
        return self._client.query(sql, job_config=config).result()

    def query(self, sql: str) -> list[Row]:
        return [dict(row.items()) for row in self._run(sql)]

    def execute(self, sql: str) -> None:
        self._run(sql)

    def create_rollup(self, tables: Sequence[Table]) -> None:
        for table in tables:
            self.execute(self.rollup_ddl(table))

    def rollup_ddl(self, table: Table) -> str:
        def bigquery_types(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.DataType) and node.is_type(exp.DataType.Type.DECIMAL):
                return exp.DataType.build("BIGNUMERIC", dialect=self.dialect)
            if isinstance(node, exp.Table) and not node.db:
                return exp.table_(node.name, db=self.dataset)
            return node

        return f"{_edited_ddl(table, self.dialect, bigquery_types)}\nCLUSTER BY {', '.join(table.key)}"

    def close(self) -> None:
        self._client.close()
