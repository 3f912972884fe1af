"""A throwaway Prometheus (Debian's package) on a free loopback port for integration tests, stopped by its pid.

It scrapes nothing: tests give it samples through remote write, which the out-of-order window lets carry past
timestamps too. The admin API is on for TSDB snapshots.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from devserver import free_port, stop_process, wait_until_ready
from tests.support.system_tools import system_tool

HOW = "apt-get install prometheus (Debian), then run make test-integration"
READY_SECONDS = 30.0

CONFIG = """\
global:
  scrape_interval: 15s
storage:
  tsdb:
    out_of_order_time_window: 30d
"""


@dataclass
class Prometheus:
    process: subprocess.Popen[bytes]
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def write_url(self) -> str:
        return f"{self.url}/api/v1/write"

    @property
    def storage(self) -> Path:
        return self.root / "data"

    def log(self) -> str:
        return (self.root / "prometheus.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited in 10 s; then remove its files."""
        stop_process(self.process)
        shutil.rmtree(self.root, ignore_errors=True)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start() -> Prometheus:
    """Start Prometheus (installing the Debian package if needed, else skipping) and wait until /-/ready."""
    binary = system_tool("prometheus", "prometheus", HOW)
    root = Path(tempfile.mkdtemp(prefix="abrollout-prom-"))
    (root / "prometheus.yml").write_text(CONFIG)
    port = free_port()
    with open(root / "prometheus.log", "ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver",
             "--web.enable-admin-api"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    server = Prometheus(process=process, root=root, port=port)
    wait_until_ready(process, lambda: _ready(server.url), f"prometheus on {server.url}", READY_SECONDS, server.log,
                     server.stop, poll_seconds=0.1)
    return server
