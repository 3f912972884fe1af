"""Where things are: the Temporal address, namespace, task queue, UI and data directory, from the environment
(flags override). Shared by starter.py and worker.py so both always talk about the same place. It imports nothing
of the worker's, so a CLI command does not load the activities and adapters it never runs."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_TASK_QUEUE = "abrollout"


@dataclass(frozen=True)
class Settings:
    address: str
    namespace: str
    task_queue: str
    ui_url: str
    data_dir: Path

    def workflow_url(self, workflow_id: str, run_id: str | None = None) -> str:
        suffix = f"/{run_id}" if run_id else ""
        return f"{self.ui_url}/namespaces/{self.namespace}/workflows/{workflow_id}{suffix}/history"


def _default_ui(address: str) -> str:
    host, _, port = address.rpartition(":")
    if port == "7233" and host in ("localhost", "127.0.0.1"):
        return f"http://{host}:8233"
    return os.environ.get("TEMPORAL_UI_URL", "http://localhost:8233")


def settings(address: str | None = None, namespace: str | None = None, task_queue: str | None = None,
             data_dir: str | None = None) -> Settings:
    resolved = address or os.environ.get("TEMPORAL_ADDRESS") or DEFAULT_ADDRESS
    return Settings(
        address=resolved,
        namespace=namespace or os.environ.get("TEMPORAL_NAMESPACE") or "default",
        task_queue=task_queue or os.environ.get("ABROLLOUT_TASK_QUEUE") or DEFAULT_TASK_QUEUE,
        ui_url=(os.environ.get("TEMPORAL_UI_URL") or _default_ui(resolved)).rstrip("/"),
        data_dir=Path(data_dir or os.environ.get("ABROLLOUT_DATA_DIR") or ".abrollout"),
    )


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """The flags `settings` takes, for every command that talks to Temporal (starter.py's, the alert receiver's)."""
    parser.add_argument("--address", help="Temporal frontend host:port (env TEMPORAL_ADDRESS, default localhost:7233)")
    parser.add_argument("--namespace", help="Temporal namespace (env TEMPORAL_NAMESPACE, default 'default')")
    parser.add_argument("--task-queue", help="task queue (env ABROLLOUT_TASK_QUEUE, default 'abrollout')")
