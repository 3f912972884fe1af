"""The warehouses the generator writes SQL for, and the one way every statement is rendered for them.

Statements are written once in DuckDB's dialect with named placeholders, parsed by sqlglot, and generated for each
target; the placeholders are then filled with literals as sqlglot writes them for that dialect. sqlglot was chosen
over hand-kept dialect templates because it parses and generates all eight warehouses' SQL from one tree, quoting
and casting each the way its engine reads it, and is maintained against those engines' grammars.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import sqlglot
from sqlglot import exp

DIALECTS: dict[str, str] = {
    "duckdb": "duckdb",
    "postgres": "postgres",
    "clickhouse": "clickhouse",
    "spark": "spark",
    "databricks": "databricks",
    "bigquery": "bigquery",
    "snowflake": "snowflake",
    "trino": "trino",
    "redshift": "redshift",
}
"""Our names -> sqlglot's. Spark SQL and Databricks share Spark's grammar; sqlglot keeps Databricks' own tweaks."""

RUN_HERE = ("duckdb", "postgres", "clickhouse", "spark")
"""The engines this project runs end to end; the others' SQL is emitted and parsed back, not executed."""

EXACT = "DECIMAL(38, 0)"
"""The type of every sum of products: exact to 38 digits. DuckDB, PostgreSQL and Spark (ANSI) raise past them;
ClickHouse keeps it in an Int128 that wraps past 2**127 (about 1.7e38) without an error, which the contract's
largest values (1e14 micro-units a user, squared 1e28) reach only past some ten billion users (its UInt64 and Int64
wrap from 1.8e19). BigQuery's NUMERIC holds 29 integer digits, so it becomes BIGNUMERIC there."""

SOURCE = "duckdb"
"""The dialect statements are written in before they are generated for a target."""


class UnknownDialect(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown SQL dialect {name!r}: use one of {', '.join(DIALECTS)}")


def sqlglot_dialect(name: str) -> str:
    if name not in DIALECTS:
        raise UnknownDialect(name)
    return DIALECTS[name]


def identifier(name: str) -> str:
    """A name quoted for the source dialect (sqlglot requotes it for each target)."""
    return exp.to_identifier(name, quoted=True).sql(SOURCE)


def qualified(name: str) -> str:
    """A possibly schema-qualified table name, each part quoted."""
    return ".".join(identifier(part) for part in name.split("."))


def string(text: str) -> str:
    """A string literal in the source dialect."""
    return exp.Literal.string(text).sql(SOURCE)


def placeholder(name: str) -> str:
    """A named value filled in when the statement is rendered (`render`)."""
    return f"${name}"


def transpile_expression(sql: str, read: str) -> str:
    """A user's expression in the catalog's dialect, rewritten in the source dialect (parenthesised unless a
    column or literal); ParseError if it is not one expression."""
    parsed = sqlglot.parse_one(sql, read=sqlglot_dialect(read), into=exp.Condition)
    simple = isinstance(parsed, exp.Column | exp.Literal | exp.Identifier)
    return parsed.sql(SOURCE) if simple else f"({parsed.sql(SOURCE)})"


def transpile_query(sql: str, read: str) -> str:
    """A user's query in the catalog's dialect, rewritten in the source dialect."""
    return sqlglot.parse_one(sql, read=sqlglot_dialect(read)).sql(SOURCE)


@lru_cache(maxsize=512)
def _generated(template: str, dialect: str) -> tuple[str, dict[str, str]]:
    """The template for `dialect`, and how each placeholder is spelled there."""
    target = sqlglot_dialect(dialect)
    tree = sqlglot.parse_one(template, read=SOURCE)
    for column in tree.find_all(exp.ColumnDef):
        # ClickHouse refuses NOT NULL on the Nullable(...) sqlglot writes for every type by default
        if column.kind is not None and column.find(exp.NotNullColumnConstraint) is not None:
            column.kind.set("nullable", False)
    names = {node.name for node in tree.find_all(exp.Placeholder)}
    spelled = {name: exp.Placeholder(this=name).sql(target) for name in names}
    return tree.sql(target, pretty=True), spelled


def render(template: str, dialect: str, values: Mapping[str, str | int]) -> str:
    """The statement for `dialect` with every placeholder replaced by its value as a literal. Longer placeholder
    spellings are replaced first, so `$until` never eats `$until_at`."""
    text, spelled = _generated(template, dialect)
    target = sqlglot_dialect(dialect)
    missing = set(spelled) - set(values)
    if missing:
        raise KeyError(f"no value for placeholders {sorted(missing)}")
    for name in sorted(spelled, key=lambda n: -len(spelled[n])):
        value = values[name]
        literal = exp.Literal.number(value) if isinstance(value, int) else exp.Literal.string(value)
        text = text.replace(spelled[name], literal.sql(target))
    return text
