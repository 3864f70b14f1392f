"""Business errors the simulator answers with, as `{message, code, data: null}`."""

from __future__ import annotations

INVALID_REQUEST = 10001
SYSTEM_ERROR = 10002
RECORD_NOT_FOUND = 10007
INVALID_STATE = 12001
POD_NOT_FOUND = 13000
UNAUTHORIZED = 40101


class SimError(Exception):
    """An error answer. `http_status` None: 200, or the dialect's HTTP mapping."""

    def __init__(self, code: int, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status


def invalid(message: str) -> SimError:
    return SimError(INVALID_REQUEST, message)
