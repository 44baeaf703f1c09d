"""The one exception type edgefuse raises for bad input or unusable artifacts."""
from __future__ import annotations


class EdgefuseError(Exception):
    """A user-facing error: the message names the file, what is wrong and what to do.

    The CLI prints ``error: <message>`` on one line and exits with ``exit_code``.
    """

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
