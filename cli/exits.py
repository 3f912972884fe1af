"""Exit codes and the one exception type that carries a user-facing failure to the top without a traceback."""

from __future__ import annotations

OK = 0
RUNTIME_FAILURE = 1
BAD_INPUT = 2


class UserFacingError(Exception):
    """A failure explained in `message`; the CLI prints it and exits with `code`, never a traceback."""

    def __init__(self, message: str, code: int = BAD_INPUT) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
