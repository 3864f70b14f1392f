"""Typed errors of the Yotta client, classified from the HTTP status and the envelope code.

Every error's str() is safe to log: the client redacts the API key and the env values it
sent from the API's message before building one (the API may echo them back).
"""

from __future__ import annotations

from typing import Any

# Envelope codes (reference §3). 12000/40400/40001/40101/50001 only appear in SDK mocks or the
# v1 task API; they are mapped anyway. NotFound stays narrow on purpose: a delete that answers
# NotFound lets the operator drop its finalizer, so a wrong guess there leaks a paid pod.
NOT_FOUND_CODES = frozenset({13000, 10007, 12000, 40400})
INVALID_REQUEST_CODES = frozenset({10001, 40001})
INVALID_STATE_CODES = frozenset({12001, 11001})
UNAUTHORIZED_CODES = frozenset({10004, 11002, 40100, 40101, 40300})
TRANSIENT_CODES = frozenset({10002, 429, 50001, 50300})


class YottaError(Exception):
    """Base of every client error."""

    #: Short label used by metrics and the client's observer callback.
    kind = "error"

    def __init__(
        self,
        api_message: str = "",
        *,
        operation: str = "",
        code: int | None = None,
        http_status: int | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(api_message)
        self.api_message = api_message
        self.operation = operation
        self.code = code
        self.http_status = http_status
        #: How many HTTP attempts were made; >1 means an earlier attempt may have taken effect.
        self.attempts = attempts

    def __str__(self) -> str:
        parts = [f"code={self.code}" if self.code is not None else ""]
        if self.http_status is not None:
            parts.append(f"http={self.http_status}")
        if self.attempts > 1:
            parts.append(f"attempts={self.attempts}")
        detail = ", ".join(p for p in parts if p)
        prefix = f"yotta {self.operation}: " if self.operation else "yotta: "
        message = self.api_message or type(self).__name__
        return f"{prefix}{message}" + (f" ({detail})" if detail else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class NotFound(YottaError):
    kind = "not_found"


class InvalidRequest(YottaError):
    """Permanent: the request is wrong; retrying it unchanged will fail again."""

    kind = "invalid_request"


class InvalidState(YottaError):
    """The pod is not in a state that allows the action (e.g. pause of a PAUSED pod)."""

    kind = "invalid_state"


class Unauthorized(YottaError):
    kind = "unauthorized"


class ApiError(YottaError):
    """An error the client does not recognise (unknown code, odd HTTP status)."""

    kind = "error"


class Transient(YottaError):
    """Worth retrying later: 5xx, 429, code 10002, timeouts, connection errors."""

    kind = "transient"

    def __init__(
        self, api_message: str = "", *, retry_after: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(api_message, **kwargs)
        self.retry_after = retry_after


class OutcomeUnknown(Transient):
    """A non-idempotent call (create) may or may not have taken effect: the request may have
    reached the server and the answer was lost. Look the pod up by name before retrying."""

    kind = "outcome_unknown"


def classify(
    code: int | None, http_status: int | None, *, has_envelope: bool
) -> type[YottaError] | None:
    """Error class for a response, or None for success (HTTP 2xx and code 10000).

    A specific envelope code wins over the HTTP status (a Spring handler may send 13000 with
    HTTP 500). A 404 *without* an envelope is a wrong URL or a proxy, not a missing pod:
    reporting NotFound there would make the operator drop a finalizer and leak a paid pod.
    """
    if code in NOT_FOUND_CODES:
        return NotFound
    if code in INVALID_REQUEST_CODES:
        return InvalidRequest
    if code in INVALID_STATE_CODES:
        return InvalidState
    if code in UNAUTHORIZED_CODES:
        return Unauthorized
    status = http_status or 200
    if status in (401, 403):
        return Unauthorized
    if status == 429 or status >= 500 or code in TRANSIENT_CODES:
        return Transient
    if status == 404:
        return NotFound if has_envelope else ApiError
    if status in (400, 422):
        return InvalidRequest
    if not 200 <= status < 300:
        return ApiError
    if not has_envelope:
        return Transient  # a 2xx that is not our JSON: a proxy or a truncated body
    if code == 10000:
        return None
    return ApiError
