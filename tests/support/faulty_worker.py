"""A worker process with test faults: `python -m tests.support.faulty_worker --faults FAULTS.toml [worker.py options]`.

The production worker (workers/main.py: the same config, adapters and serve path), its adapters wrapped as the
faults file says, so production config never carries test machinery. The faults file:

    kill = "allocate-0:after"   # SIGKILL the worker at this point (tests/support/faults.py)
    [flags]                     # one table per adapter that misbehaves (tests/support/misbehaving.py)
    error = "5xx"
    fail_calls = [1, 2]
"""

from __future__ import annotations

import argparse
import functools
import sys

from pydantic import field_validator

from adapters.config import load_toml
from adapters.protocols import AdapterConfigError, Adapters
from client.exits import BAD_INPUT, exit_process
from tests.support.faults import KillPoint, with_kill_point
from tests.support.misbehaving import Misbehaviours, misbehaving
from workers.main import main as worker_main


class Faults(Misbehaviours):
    kill: str | None = None

    @field_validator("kill")
    @classmethod
    def _a_kill_point(cls, text: str | None) -> str | None:
        if text is not None:
            KillPoint.parse(text)
        return text


def with_faults(adapters: Adapters, faults: Faults) -> Adapters:
    """The adapters misbehaving as `faults` says, then able to kill the worker at its kill point."""
    wrapped = misbehaving(adapters, faults)
    return with_kill_point(wrapped, KillPoint.parse(faults.kill)) if faults.kill else wrapped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.faulty_worker", add_help=False)
    parser.add_argument("--faults", required=True, metavar="FAULTS.toml", help="the kill point and misbehaviours")
    args, worker_argv = parser.parse_known_args(argv)
    try:
        faults = load_toml(args.faults, Faults, "--faults")
    except AdapterConfigError as exc:
        print(f"faults: {exc}", file=sys.stderr)
        return BAD_INPUT
    return worker_main(worker_argv, wrap=functools.partial(with_faults, faults=faults))


if __name__ == "__main__":
    exit_process(main())
