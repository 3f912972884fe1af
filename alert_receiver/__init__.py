"""The push path from an alerting system into the experiments: an Alertmanager webhook receiver.

A firing alert's `experiment` gets an `alert` signal, so its guardrail check runs now; the check, not the alert,
decides. `python -m alert_receiver --help` (or `starter.py alert-receiver`); the answers, the token, coalescing and
an Alertmanager config: docs/operations.md#alerts-the-push-path.
"""

from alert_receiver.auth import TOKEN_ENV
from alert_receiver.command import SUMMARY, add_arguments, cmd_alert_receiver
from alert_receiver.payload import BadPayload, alert_reason, parse_payload
from alert_receiver.server import AlertReceiver

__all__ = ["SUMMARY", "TOKEN_ENV", "AlertReceiver", "BadPayload", "add_arguments", "alert_reason",
           "cmd_alert_receiver", "parse_payload"]
