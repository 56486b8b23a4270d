"""Exit statuses, and the one place where exceptions become them."""
from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1  # unexpected internal error
    USAGE = 2  # click's own usage errors use 2 as well
    BAD_INPUT = 3  # unreadable / not a capture / truncated beyond use
    PERMISSION = 4  # live capture without root / CAP_NET_RAW
    INTERRUPTED = 130


class AnalyzerError(Exception):
    """Base of the errors that end a run with a one-line message."""

    status: ExitStatus = ExitStatus.ERROR


class InputError(AnalyzerError):
    """A file that cannot be read as a capture."""

    status = ExitStatus.BAD_INPUT


class CapturePermissionError(AnalyzerError):
    status = ExitStatus.PERMISSION


class DecodeError(Exception):
    """Raised inside decoders; always caught and counted as a skip reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
