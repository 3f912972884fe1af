"""The receiver's command, `python -m alert_receiver` or `starter.py alert-receiver` (one parser, one handler): the
token and the address checked before anything starts, then serve until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence

from alert_receiver.auth import TOKEN_ENV, receiver_token
from alert_receiver.coalesce import DEFAULT_WINDOW_SECONDS
from alert_receiver.payload import DEFAULT_LABEL
from alert_receiver.server import DEFAULT_HOST, DEFAULT_PORT, AlertReceiver
from client.connect import connect
from client.exits import OK, RUNTIME_FAILURE, UserFacingError
from client.settings import Settings, add_connection_flags, settings

SUMMARY = ("receive Alertmanager webhooks (POST /alerts): each firing alert's `experiment` label gets an alert signal, "
           "so that experiment runs a guardrail check now; takes only alerts carrying the bearer token "
           f"${TOKEN_ENV} (unless --insecure-loopback); runs in the foreground until Ctrl-C")


async def cmd_alert_receiver(args: argparse.Namespace, s: Settings) -> int:
    token = receiver_token(os.environ, args.host, args.insecure_loopback)
    client = await connect(s)
    try:
        receiver = AlertReceiver(client, token=token, host=args.host, port=args.port, label=args.label,
                                 coalesce_seconds=args.coalesce_seconds)
    except OSError as exc:
        raise UserFacingError(f"error: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); fix: "
                              "choose another --port, or a --host of this machine", RUNTIME_FAILURE) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    auth = f"bearer token from {TOKEN_ENV}" if token else "NO authentication (--insecure-loopback)"
    async with receiver:
        print(f"alert receiver on {receiver.url} (label '{args.label}', {auth}, coalescing "
              f"{args.coalesce_seconds:g} s) -> Temporal {s.address}, namespace {s.namespace}; Ctrl-C stops it",
              flush=True)
        await stop.wait()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)
    print("alert receiver stopped", flush=True)
    return OK


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port; fix: give 0 to 65535 (0 picks a free one)")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: "
                        "loopback only)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a "
                        "free one, printed at start)")
    parser.add_argument("--label", default=DEFAULT_LABEL, help="the alert label naming the experiment key "
                        f"(default '{DEFAULT_LABEL}')")
    parser.add_argument("--coalesce-seconds", type=_seconds, default=DEFAULT_WINDOW_SECONDS, metavar="SECONDS",
                        help="after an experiment's alert signal is taken, further alerts for it within this many "
                        "seconds are answered 'coalesced' and sent as one more signal when the window ends "
                        f"(default {DEFAULT_WINDOW_SECONDS:g}; 0: only while one is in flight)")
    parser.add_argument("--insecure-loopback", action="store_true",
                        help=f"take alerts without a bearer token ({TOKEN_ENV} unset); only with a loopback --host")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m alert_receiver`: starter.py's connection flags and the receiver's own; a bad option exits 2
    (argparse), a refusal or an unreachable Temporal with its one-line message and exit code."""
    parser = argparse.ArgumentParser(prog="python -m alert_receiver", description=SUMMARY)
    add_connection_flags(parser)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return asyncio.run(cmd_alert_receiver(args, settings(args.address, args.namespace, args.task_queue)))
    except UserFacingError as exc:
        print(exc.message, file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:  # Ctrl-C before the receiver took over SIGINT (while connecting)
        print("interrupted", file=sys.stderr)
        return 130
