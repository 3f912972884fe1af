"""Race several worker processes against one store: the concurrency tests of every registry use this."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

Contender = Callable[[str, str, Barrier, "Queue[str]"], None]


def race(contender: Contender, target: str, workers: int = 4, timeout: float = 120) -> list[str]:
    """Start `workers` spawned processes running `contender(target, f"race-{i}", barrier, results)`, released
    together by the barrier; each puts one outcome on `results`. The outcomes, in arrival order."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(workers), context.Queue()
    processes = [context.Process(target=contender, args=(target, f"race-{i}", barrier, results))
                 for i in range(workers)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=timeout) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    return outcomes
