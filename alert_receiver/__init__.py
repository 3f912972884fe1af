"""The push path from an alerting system into the experiments: an Alertmanager webhook receiver.

    ABROLLOUT_ALERT_TOKEN=<secret> python -m alert_receiver [--host 127.0.0.1] [--port 9095]
        [--label experiment] [--coalesce-seconds 5] [--insecure-loopback] [--address localhost:7233]

(`python starter.py alert-receiver` takes the same arguments.)

`POST /alerts` takes Alertmanager's webhook JSON (version 4: ``{"alerts": [{"status": "firing", "labels": {...},
"annotations": {...}}, ...]}``) and, for every experiment named by a firing alert's `experiment` label (the
experiment key, or its workflow id ``exp-<key>``), sends that workflow's `alert` signal: the experiment runs a
guardrail check at once (receipt step ``check-alert-N``) instead of at its next scheduled check, and stops with a
rollback if the metrics show a breach. An alert never decides anything itself: the check does, on the metrics.

Only callers with the token may cause those checks: every POST must carry ``Authorization: Bearer <token>``, the
token being `ABROLLOUT_ALERT_TOKEN` (Alertmanager: the webhook_config's ``http_config.authorization``). Without
it the command refuses to start (exit 2), unless `--insecure-loopback` says to take alerts without a token, which
it allows on a loopback --host only. While an experiment's signal is in flight, and for `--coalesce-seconds` after
it was taken, further alerts for it are answered 200 with the experiment listed under `coalesced`, and are owed:
one more signal, carrying the latest of them, goes when the window ends. A burst costs two checks, and no alert
waits longer than the window.

Answers (JSON, ``{"signalled": [...], "coalesced": [...], "unknown": [...], "closed": [...],
"resolved_ignored": N}`` or ``{"error": ...}``):

- 200: every firing alert's experiment was signalled or coalesced (resolved alerts are ignored; a payload with
  nothing firing is a 200 that signals nothing);
- 400: the body is not an Alertmanager payload, or a firing alert has no usable `experiment` label; the message
  names the alert and the fix;
- 401 (with ``WWW-Authenticate: Bearer``): the token is missing or wrong; 415: the body is not sent as
  ``application/json``; 413: the body is over 1 MiB; with these and a 400, nothing is sent;
- 404: an experiment does not exist; 409: it is no longer running; the others in the same payload were signalled;
- 503: Temporal did not answer in time, or the receiver is at its cap of requests at once (a plain-text answer,
  given at once); Alertmanager retries 5xx answers, not 4xx.

`GET /healthz` answers 200 once the receiver is connected to Temporal (no token needed). It listens on loopback
unless `--host` says otherwise, and runs in the foreground until Ctrl-C (SIGINT) or SIGTERM. The HTTP side is
uvicorn (h11) on the same event loop as the Temporal client, with a cap on requests at once, a deadline on
receiving each request and one on delivering its signals, so a slow or flooding caller costs bounded resources.
"""

from alert_receiver.auth import TOKEN_ENV
from alert_receiver.command import SUMMARY, add_arguments, cmd_alert_receiver
from alert_receiver.payload import BadPayload, alert_reason, parse_payload
from alert_receiver.server import AlertReceiver

__all__ = ["SUMMARY", "TOKEN_ENV", "AlertReceiver", "BadPayload", "add_arguments", "alert_reason",
           "cmd_alert_receiver", "parse_payload"]
