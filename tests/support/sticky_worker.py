"""A worker process for tests that need a worker to die mid-step with its workflow still sticky to it:
`python -m tests.support.sticky_worker ADDRESS TASK_QUEUE DATA_DIR KILL_POINT STICKY_SECONDS`.

Like worker.py on the embedded adapters, but the kill point comes from the command line and the sticky queue's
schedule-to-start timeout is long, so the workflow task that follows the death waits on the dead worker's queue
for as long as the test needs (the SDK's default is 10 s)."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from adapters.local import local_adapters
from tests.support.faults import KillPoint, with_kill_point
from workers.assembly import build_worker


async def serve(address: str, task_queue: str, data_dir: Path, kill: str, sticky_seconds: float) -> None:
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    adapters = with_kill_point(local_adapters(data_dir), KillPoint.parse(kill))
    async with build_worker(client, adapters, task_queue=task_queue,
                            sticky_queue_schedule_to_start_timeout=timedelta(seconds=sticky_seconds)):
        print("worker started", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    address, queue, data, kill, sticky = sys.argv[1:6]
    asyncio.run(serve(address, queue, Path(data), kill, float(sticky)))
