"""Reading Alertmanager's webhook body (version 4): the firing alerts, each with the experiment it names."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from abrollout.contracts.spec import EXPERIMENT_NAME_PATTERN
from workflows.experiment import workflow_id

DEFAULT_LABEL = "experiment"
REASON_CHARS = 500  # AlertRequest.reason's limit
SOURCE = "alertmanager"
_NAME = re.compile(EXPERIMENT_NAME_PATTERN)


class BadPayload(ValueError):
    """The request body is not something this receiver can act on; the message says what and how to fix it."""


@dataclass(frozen=True)
class FiringAlert:
    experiment: str  # the experiment key
    name: str  # alertname, or "alert"
    summary: str  # the summary or description annotation, if any


@dataclass
class Parsed:
    firing: list[FiringAlert]
    resolved: int

    def by_workflow(self) -> dict[str, list[FiringAlert]]:
        """The firing alerts grouped by the workflow id of their experiment: one signal each."""
        groups: dict[str, list[FiringAlert]] = {}
        for alert in self.firing:
            groups.setdefault(workflow_id(alert.experiment), []).append(alert)
        return groups


def experiment_key(value: str) -> str:
    """The experiment key a label names: the key itself, or its workflow id `exp-<key>`."""
    key = value.removeprefix("exp-") if value.startswith("exp-") and _NAME.match(value[4:]) else value
    if not _NAME.match(key):
        raise ValueError(value)
    return key


def parse_payload(body: bytes, label: str = DEFAULT_LABEL) -> Parsed:
    """The firing alerts of an Alertmanager webhook body (version 4), each with its experiment; BadPayload if
    the body is not one, or a firing alert does not name an experiment in `label`."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep, a number too long
        detail = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise BadPayload(f"the body is not JSON ({detail}); send Alertmanager's webhook payload") from None
    if not isinstance(payload, dict):
        raise BadPayload(f"the body is a JSON {type(payload).__name__}, not an object; send Alertmanager's webhook "
                         "payload")
    version = payload.get("version")
    if version is not None and str(version) != "4":
        raise BadPayload(f"webhook payload version {version!r}; this receiver reads version 4")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise BadPayload("no `alerts` list in the payload; send Alertmanager's webhook payload (version 4)")
    parsed = Parsed(firing=[], resolved=0)
    for index, alert in enumerate(alerts):
        where = f"alerts[{index}]"
        if not isinstance(alert, dict):
            raise BadPayload(f"{where} is not an object")
        status = alert.get("status")
        if status == "resolved":
            parsed.resolved += 1
            continue
        if status != "firing":
            raise BadPayload(f"{where}.status is {status!r}; expected 'firing' or 'resolved'")
        labels = alert.get("labels")
        annotations = alert.get("annotations") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise BadPayload(f"{where}.labels must be an object of strings")
        if not isinstance(annotations, dict):
            raise BadPayload(f"{where}.annotations must be an object")
        name = labels.get("alertname") or "alert"
        value = labels.get(label)
        if not value:
            raise BadPayload(f"firing alert {name!r} ({where}) has no `{label}` label; fix: add the label with the "
                             f"experiment key to the alerting rule, and route only alerts carrying it here "
                             f"(matcher {label}=~\".+\", group_by: [{label}])")
        try:
            key = experiment_key(value)
        except ValueError:
            raise BadPayload(f"firing alert {name!r} ({where}): `{label}` is {value[:80]!r}, not an experiment key "
                             f"(pattern {EXPERIMENT_NAME_PATTERN})") from None
        summary = annotations.get("summary") or annotations.get("description") or ""
        parsed.firing.append(FiringAlert(experiment=key, name=str(name), summary=str(summary)))
    return parsed


def alert_reason(alerts: list[FiringAlert]) -> str:
    """What fired, for the receipt: `alertmanager: HighDefectRate (summary); OtherAlert`, within the limit."""
    parts = [f"{a.name} ({' '.join(a.summary.split())})" if a.summary else a.name for a in alerts]
    text = f"{SOURCE}: " + "; ".join(dict.fromkeys(parts))
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3] + "..."
