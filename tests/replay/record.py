"""Record the golden scenarios' workflow histories for the replay test: `python -m tests.replay.record`.

Run it when a workflow change is meant to be visible in new histories (behind `workflow.patched`); keep the old
files too, so running experiments recorded with the old code keep replaying in CI.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from datetime import timedelta
from pathlib import Path

from abrollout.run.control import StopRequest
from adapters.local import local_adapters
from client.experiments import start_experiment
from tests.support.temporal_env import time_skipping
from tests.workflows.conftest import golden_spec
from workers.assembly import build_worker
from workflows.experiment import ExperimentWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"
SCENARIOS = ("clear-win", "guardrail-breach", "srm", "no-effect", "abn")


async def record() -> None:
    env = await time_skipping()
    try:
        with tempfile.TemporaryDirectory() as data:
            async with build_worker(env.client, local_adapters(Path(data)), task_queue="record"):
                for scenario in SCENARIOS:
                    handle = await start_experiment(env.client, golden_spec(scenario), "record")
                    await handle.result()
                    await _save(handle.id, await handle.fetch_history())
                stopped = await start_experiment(env.client, golden_spec("steady", name="replay-manual-stop"),
                                                 "record")
                await env.sleep(timedelta(hours=3))
                await stopped.signal(ExperimentWorkflow.stop, StopRequest(reason="recorded stop"))
                await stopped.result()
                await _save(stopped.id, await stopped.fetch_history())
    finally:
        await env.shutdown()


async def _save(workflow_id: str, history: object) -> None:
    path = HISTORIES / f"{workflow_id}.json"
    path.write_text(json.dumps({"workflow_id": workflow_id, "history": history.to_json_dict()},  # type: ignore[attr-defined]
                               separators=(",", ":")))
    print(f"{path.relative_to(Path.cwd())}: {path.stat().st_size // 1024} kB")


if __name__ == "__main__":
    asyncio.run(record())
