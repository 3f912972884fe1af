"""Exit codes and the one exception type that carries a user-facing failure to the top without a traceback."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn

OK = 0
RUNTIME_FAILURE = 1
BAD_INPUT = 2


class UserFacingError(Exception):
    """A failure explained in `message`; the CLI prints it and exits with `code`, never a traceback."""

    def __init__(self, message: str, code: int = BAD_INPUT) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def exit_process(code: int) -> NoReturn:
    """Flush and leave without interpreter teardown. The Temporal client's Rust threads can outlive the event
    loop and abort CPython's finalisation ("PyGILState_Release ... finalizing", temporalio/sdk-python#300), which
    would turn a successful command into exit -6; everything is done and flushed when this runs. A reader that left
    (`starter.py list | head -1`) is no failure: what it did not read is dropped, silently."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError):
            stream.flush()
    os._exit(code)
