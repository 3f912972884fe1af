"""Workflows call the tools by reference, so they import the activity definitions; those may bring the adapters'
protocols, never an adapter or a driver that does I/O."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IO_PACKAGES = {"duckdb", "psycopg", "httpx", "uvicorn", "cli", "client", "workers", "alert_receiver", "devserver"}


def test_the_workflows_import_no_adapter_and_no_io_driver() -> None:
    probe = ("import json, sys, workflows.experiment, workflows.safety_net; "
             "print(json.dumps(sorted(m for m in sys.modules if '.' not in m or m.startswith('adapters.'))))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True, text=True,
                                           capture_output=True).stdout))
    assert loaded & IO_PACKAGES == set()
    assert {m for m in loaded if m.startswith("adapters.")} == {"adapters.protocols"}
