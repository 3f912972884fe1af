"""A throwaway PostgreSQL on a free loopback port for integration tests (Debian's packages), stopped by its pid.

initdb refuses to run as root, so as root the cluster belongs to the `postgres` user (created by the package).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from devserver import free_port
from tests.support.system_tools import apt_install

HOW = "apt-get install postgresql (Debian), then run make test-integration"


def _bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


def bin_dir() -> Path:
    """Where initdb/pg_ctl live, installing Debian's postgresql if needed; skips the test otherwise."""
    directory = _bin_dir()
    if directory is None:
        problem = apt_install("postgresql")
        directory = _bin_dir()
        if directory is None:
            pytest.skip(f"PostgreSQL not available ({problem or 'no pg_ctl after install'}): {HOW}")
    return directory


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class Postgres:
    bin: Path
    data: Path
    port: int

    def dsn(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run([str(self.bin / "psql"), self.dsn(database), "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                             capture_output=True, text=True, timeout=60, check=True)
        return out.stdout

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        subprocess.run(_as_owner([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.data.parent, ignore_errors=True)


def start() -> Postgres:
    """initdb + pg_ctl start on 127.0.0.1 with fsync off (test data only), in a fresh directory the `postgres`
    user can reach (pytest's own tmp dirs are private to root)."""
    binaries = bin_dir()
    data = Path(tempfile.mkdtemp(prefix="abrollout-pg-")) / "pgdata"
    data.mkdir()
    if os.geteuid() == 0:
        data.parent.chmod(0o755)
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(_as_owner([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                              "-E", "UTF8"]), capture_output=True, timeout=120, check=True)
    port = free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off -c max_connections=200"
    subprocess.run(_as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w",
                              "-o", options, "start"]), capture_output=True, timeout=120, check=True)
    return Postgres(bin=binaries, data=data, port=port)
