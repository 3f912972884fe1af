"""What one fleet run is: its sizes, its workload (our experiments or Temporal's floor) and its clock. Kept apart
so that the harness, the history reader and the figures agree on the same cadence."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from abrollout.contracts.spec import ExperimentSpec
from abrollout.spec.loader import check_raw

SPEC = Path(__file__).resolve().parent.parent / "fleet.yaml"
WORKER_OPTIONS_ENV = "ABROLLOUT_BENCH_WORKER_OPTIONS"
"""JSON of extra temporalio Worker options for the fleet worker (e.g. {"max_cached_workflows": 200}): a knob for
investigating worker settings without editing workers/assembly.py. Unset, the worker is exactly build_worker's."""


@dataclass(frozen=True)
class FleetConfig:
    """`steps`: the fleet grows to each size in turn (100, then 400 more, ...), and with `window_seconds` each
    size is measured over a steady window once every clock runs; without it, one size runs to completion."""

    steps: tuple[int, ...]
    mode: str = "ours"  # ours | floor
    hour_seconds: float = 2.0
    check_every_hours: int = 1
    days: int = 1  # the duration cap; the single analysis look is at the cap
    window_seconds: float | None = None
    settle_seconds: float = 15.0  # ours: after every clock runs, before the window, the set-up's backlog drains
    start_concurrency: int = 50
    timeout_seconds: float = 1800.0
    worker_options: tuple[tuple[str, Any], ...] = ()  # extra temporalio Worker options (WORKER_OPTIONS_ENV)
    spec_path: Path = SPEC

    @property
    def n(self) -> int:
        return max(self.steps)

    def spec(self, index: int = 0) -> ExperimentSpec:
        raw = yaml.safe_load(self.spec_path.read_text())
        raw["name"] = f"fleet-{index:04d}"
        raw["max_duration_days"] = self.days
        schedule = raw.setdefault("schedule", {})
        schedule.update(hour_seconds=self.hour_seconds, guardrail_check_every=f"{self.check_every_hours}h",
                        analysis_every=f"{24 * self.days}h")
        checked = check_raw(raw)
        if not checked.ok or checked.spec is None:
            raise ValueError(f"{self.spec_path}: {[str(p) for p in checked.problems if p.level.value == 'error']}")
        return checked.spec

    @property
    def checks_per_workflow(self) -> int:
        return self.days * 24 // self.check_every_hours

    @property
    def interval_seconds(self) -> float:
        """Real seconds between a workflow's checkpoints."""
        return self.check_every_hours * self.hour_seconds

    def workflow_id(self, index: int) -> str:
        return f"exp-fleet-{index:04d}" if self.mode == "ours" else f"floor-{index:04d}"
