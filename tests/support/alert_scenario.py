"""The push-path scenario shared by tests/alert_receiver/test_receiver.py and bench/rollback_latency_bench.py: a
real-time prompts experiment without simulated traffic, the rows a caller writes into its metrics store (healthy, then a
breach of the defect-rate guardrail), and Alertmanager's webhook payload around alerts, with its bearer token."""

from __future__ import annotations

from typing import Any

import numpy as np

from abrollout.contracts.spec import ExperimentSpec
from abrollout.spec.loader import check_text
from adapters.simulator import Exposures, MetricEvents, PrePeriod, Rows

USERS_PER_ARM = 1000

SPEC = """
name: {name}
domain: prompts
treatment_spec:
  control: {{prompt: assistant-v6}}
  treatment: {{prompt: assistant-v7}}
primary_metric: {{name: resolved_rate, kind: proportion, baseline: 0.30}}
guardrails:
  - {{name: defect_rate, threshold: 0.03, direction: "<"}}
mde: {{kind: relative, value: 5}}
max_duration_days: 14
max_concurrent: 50
owners: [assistant-team@example.com]
allocation: {{expected_daily_users: 9600}}
schedule: {{hour_seconds: 3600}}
"""


def spec(name: str) -> ExperimentSpec:
    """A real-time experiment (its first scheduled check an hour away) whose metrics are what the caller writes."""
    check = check_text(SPEC.format(name=name), name)
    assert check.spec is not None, [str(p) for p in check.problems]
    return check.spec


def rows(users: list[str], arms: list[str], defects: list[str]) -> Rows:
    """Exposures of `users` in `arms` and one defect_rate event per user in `defects`, at experiment second 0."""
    def strings(values: list[str]) -> np.ndarray[Any, np.dtype[np.object_]]:
        return np.array(values, dtype=object)

    return Rows(
        exposures=Exposures(user_id=strings(users), arm=strings(arms), at_s=np.zeros(len(users), dtype=np.int32)),
        metric_events=MetricEvents(user_id=strings(defects), metric=strings(["defect_rate"] * len(defects)),
                                   value=np.ones(len(defects)), at_s=np.zeros(len(defects), dtype=np.int32)),
        pre_period=PrePeriod(user_id=strings([]), metric=strings([]), value=np.empty(0)))


def healthy_rows() -> Rows:
    """USERS_PER_ARM users per arm, 1% with a defect in each: the guardrail (< 3%) holds."""
    users = [f"{arm}-{i}" for arm in ("control", "treatment") for i in range(USERS_PER_ARM)]
    return rows(users, [user.split("-")[0] for user in users],
                [user for user in users if int(user.split("-")[1]) % 100 == 0])


def breach_rows() -> Rows:
    """15% of the treatment's users log a defect (events only, no new exposures: no sample ratio mismatch); its
    rate goes to 16%, over the 3% threshold."""
    return rows([], [], [f"treatment-{i}" for i in range(1, USERS_PER_ARM, 7)])


def webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    """Alertmanager's webhook payload (version 4) around `alerts`."""
    return {"version": "4", "groupKey": "{}:{experiment=\"x\"}", "truncatedAlerts": 0, "status": "firing",
            "receiver": "abrollout", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "alerts": list(alerts)}


def bearer(token: str) -> dict[str, str]:
    """The header Alertmanager sends with `http_config.authorization: {type: Bearer, credentials: <token>}`."""
    return {"Authorization": f"Bearer {token}"}


def alert(experiment: str | None, status: str = "firing", name: str = "DefectRateHigh",
          summary: str = "defect rate over 3%") -> dict[str, Any]:
    """One alert of the payload, labelled with the experiment's key (or not, with None)."""
    labels = {"alertname": name, "severity": "page", **({"experiment": experiment} if experiment else {})}
    return {"status": status, "labels": labels, "annotations": {"summary": summary},
            "startsAt": "2026-11-25T04:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph", "fingerprint": "0123456789abcdef"}
