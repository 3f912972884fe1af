"""Apache Spark through pyspark: local mode in this process's JVM, a standalone cluster (`spark://host:7077`), or a
Spark Connect server (`sc://host:15002`). Tables are Spark managed tables (parquet) in the session's warehouse.

The engine runs its session in ANSI mode (Spark 4's default), so an exact sum that outgrows DECIMAL(38, 0) raises
instead of turning NULL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import SparkSession

from abrollout.warehouse.dialects import render
from abrollout.warehouse.rollup import Table
from adapters.simulator import Rows
from adapters.warehouse.embedded import EMBEDDED, Batch, batch_tables
from adapters.warehouse.engine import Row

CONNECT = "sc://"
"""A master starting with this is a Spark Connect server (builder.remote); anything else is a master URL."""

LOCAL = {
    "spark.driver.host": "127.0.0.1",  # loopback only: the driver and its executors share this process
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",  # no web UI listening on every interface
    "spark.ui.showConsoleProgress": "false",
}
"""Settings for local mode only; a cluster keeps its own."""


def session_options(master: str, warehouse_dir: Path | None, app_name: str) -> dict[str, str]:
    """What `connect` gives the session builder: `spark.remote` for Spark Connect, else `spark.master` (and, in local
    mode, `LOCAL` and one shuffle partition per core: a check shuffles kilobytes, and Spark's default of 200 tasks
    a shuffle costs seconds), the application name and the warehouse directory."""
    options = {"spark.app.name": app_name}
    if master.startswith(CONNECT):
        options["spark.remote"] = master
    else:
        options["spark.master"] = master
        cores = _local_cores(master)
        if cores is not None:
            options |= LOCAL | {"spark.sql.shuffle.partitions": str(cores)}
    if warehouse_dir is not None:
        options["spark.sql.warehouse.dir"] = str(warehouse_dir)
    return options


def builder(master: str, warehouse_dir: Path | None = None, app_name: str = "abrollout") -> SparkSession.Builder:
    """A session builder set up by `session_options`: nothing starts or connects until getOrCreate."""
    options = session_options(master, warehouse_dir, app_name)
    built = SparkSession.builder
    if master.startswith(CONNECT):
        built = built.remote(options.pop("spark.remote"))
    else:
        built = built.master(options.pop("spark.master"))
    for key, value in options.items():
        built = built.config(key, value)
    return built


def _local_cores(master: str) -> int | None:
    """Worker threads of a local master (`local`, `local[N]`, `local[*]`, `local[N, retries]`), None otherwise."""
    found = re.fullmatch(r"local(?:\[(\d+|\*)(?:,\s*\d+)?\])?", master)
    if found is None:
        return None
    threads = found.group(1) or "1"
    return (os.cpu_count() or 1) if threads == "*" else int(threads)


class SparkEngine:
    """Statements on one SparkSession (threads may share it). `close` stops the session only if it came from
    `connect`: a session handed in belongs to whoever built it."""

    name = dialect = "spark"

    def __init__(self, spark: SparkSession, *, owned: bool = False) -> None:
        self.spark, self._owned = spark, owned
        spark.conf.set("spark.sql.ansi.enabled", "true")

    @classmethod
    def connect(cls, master: str, warehouse_dir: Path | None = None, app_name: str = "abrollout") -> SparkEngine:
        """An engine on a session of `master`: `local[N]`, `spark://host:port` or `sc://host:port`. As in pyspark, a
        session already running in this process is reused (and stopped by `close`)."""
        return cls(builder(master, warehouse_dir, app_name).getOrCreate(), owned=True)

    def query(self, sql: str) -> list[Row]:
        return [row.asDict() for row in self.spark.sql(sql).collect()]

    def execute(self, sql: str) -> None:
        self.spark.sql(sql).collect()

    def create_rollup(self, tables: Sequence[Table]) -> None:
        """Parquet managed tables: a check reads a few columns of many rows, and the parquet reader skips row groups
        by their min/max statistics (appended rows' loaded_at only grows, so a watermark skips the older files)."""
        for table in tables:
            self.execute(f"{render(table.create(), self.dialect, {})}\nUSING parquet")

    def create_embedded_tables(self) -> None:
        """exposures, metric_events and pre_period."""
        self.create_rollup(EMBEDDED)

    def load(self, exp_key: str, rows: Rows, loaded_at: int) -> None:
        """Append one batch under `loaded_at`."""
        self.load_batches(exp_key, [(rows, loaded_at)])

    def load_batches(self, exp_key: str, batches: Sequence[Batch]) -> None:
        """Append batches, each under its own loaded_at: one Arrow-backed DataFrame and one insert per table."""
        for table, columns in batch_tables(exp_key, batches):
            self.spark.createDataFrame(columns).write.insertInto(table.name)

    def close(self) -> None:
        if self._owned:
            self.spark.stop()
