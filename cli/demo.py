"""`make demo`: a real Temporal dev server (unless one answers already), a real worker process, the demo
experiment on an accelerated clock with simulated traffic, followed live to its decision, then the report.

It stops only what it started. On a terminal it keeps the server and worker up for you to explore the UI
until Ctrl-C; without one (CI, scripts) it cleans up and exits on its own.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import devserver
from cli.commands import follow
from cli.spec_input import load_checked_spec
from client.connect import connect
from client.exits import BAD_INPUT, OK, RUNTIME_FAILURE, UserFacingError, exit_process
from client.experiments import start_experiment
from client.settings import Settings, settings

DEMO_SPEC = Path(__file__).resolve().parent.parent / "examples" / "demo.yaml"
ROOT = DEMO_SPEC.parent.parent


def _ensure_server(s: Settings, stack: ExitStack) -> Settings:
    if devserver.answers(s.address):
        print(f"using the Temporal server that answers on {s.address}")
        return s
    host, _, port = s.address.rpartition(":")
    if host not in ("localhost", "127.0.0.1"):
        raise UserFacingError(f"error: nothing answers at {s.address}; fix: start that server, or unset "
                              "TEMPORAL_ADDRESS to let the demo start a local one", RUNTIME_FAILURE)
    ui_port = int(os.environ.get("TEMPORAL_UI_PORT", "8233"))
    print(f"starting the Temporal dev server on 127.0.0.1:{port} (Web UI on port {ui_port}, "
          f"data in {s.data_dir / 'temporal.sqlite'})")
    server = devserver.start(s.data_dir / "temporal.sqlite", int(port), ui_port, log_file=s.data_dir / "temporal.log")
    stack.callback(server.stop)
    return Settings(address=server.address, namespace=s.namespace, task_queue=s.task_queue,
                    ui_url=server.ui_url or s.ui_url, data_dir=s.data_dir)


def _start_worker(s: Settings, stack: ExitStack) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TEMPORAL_ADDRESS": s.address, "TEMPORAL_NAMESPACE": s.namespace,
           "ABROLLOUT_TASK_QUEUE": s.task_queue, "ABROLLOUT_DATA_DIR": str(s.data_dir)}
    log = open(s.data_dir / "worker.log", "ab")  # noqa: SIM115 - closed by the stack
    stack.callback(log.close)
    worker = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=env, stdout=log, stderr=log,
                              stdin=subprocess.DEVNULL, cwd=ROOT)

    def stop() -> None:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()

    stack.callback(stop)
    print(f"started a worker (pid {worker.pid}, logs in {s.data_dir / 'worker.log'})")
    return worker


async def _run(s: Settings) -> int:
    check = load_checked_spec(str(DEMO_SPEC), interactive=False)
    if check.spec is None:
        raise UserFacingError(f"error: {DEMO_SPEC} is not valid: {[str(p) for p in check.problems]}", BAD_INPUT)
    name = f"{check.spec.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    spec = check.spec.model_copy(update={"name": name})
    client = await connect(s)
    handle = await start_experiment(client, spec, s.task_queue)
    print(f"\nexperiment {handle.id}: {spec.max_duration_days} days at {spec.schedule.hour_seconds:g} s per "
          f"experiment hour, {spec.simulation.users_per_hour if spec.simulation else 0} simulated users/hour")
    print(f"  Temporal UI: {s.workflow_url(handle.id, handle.result_run_id)}\n")
    code = await follow(handle, quiet_checks=True)
    print(f"""
Try next:
  .venv/bin/python starter.py report {handle.id} --open      # the report and its dashboard snapshot
  .venv/bin/python starter.py history {handle.id}            # every receipt with its history event id
  .venv/bin/python starter.py list --state promote
  .venv/bin/python starter.py start examples/golden/guardrail-breach.yaml --wait
  .venv/bin/temporal workflow list --address {s.address} --query "ExperimentState='promote'"
Temporal UI: {s.ui_url}  (search ExperimentState="promote"; open the workflow for its activity timeline)""")
    return code


def main() -> int:
    s = settings()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with ExitStack() as stack:
        try:
            s = _ensure_server(s, stack)
            _start_worker(s, stack)
            code = asyncio.run(_run(s))
            print(f"\ndemo finished in {time.monotonic() - started:.1f} s")
            if sys.stdin.isatty() and sys.stdout.isatty():
                print("the worker (and any server) the demo started keep running; press Ctrl-C to stop them")
                _wait_for_ctrl_c()
        except UserFacingError as exc:
            print(exc.message, file=sys.stderr)
            return exc.code
        except KeyboardInterrupt:
            print("\nstopping what the demo started", file=sys.stderr)
            return 130
    return code if code == OK else RUNTIME_FAILURE


def _wait_for_ctrl_c() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping the server and worker the demo started")


if __name__ == "__main__":
    exit_process(main())
