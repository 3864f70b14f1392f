"""Error classification from the HTTP status and the envelope code together."""

from __future__ import annotations

import pytest

from gpupod_operator.yotta import (
    ApiError,
    InvalidRequest,
    InvalidState,
    NotFound,
    OutcomeUnknown,
    Transient,
    Unauthorized,
    YottaError,
)
from gpupod_operator.yotta.errors import classify


@pytest.mark.parametrize(
    ("code", "http", "envelope", "expected"),
    [
        (10000, 200, True, None),
        (13000, 200, True, NotFound),
        (10007, 200, True, NotFound),
        (None, 404, True, NotFound),
        (13000, 500, True, NotFound),  # a specific code wins over the HTTP status
        (None, 404, False, ApiError),  # wrong URL or proxy, not a missing pod
        (10001, 200, True, InvalidRequest),
        (None, 400, True, InvalidRequest),
        (None, 422, False, InvalidRequest),
        (12001, 200, True, InvalidState),
        (None, 401, False, Unauthorized),
        (None, 403, True, Unauthorized),
        (40101, 200, True, Unauthorized),
        (10002, 200, True, Transient),
        (None, 500, False, Transient),
        (None, 502, False, Transient),
        (429, 429, True, Transient),
        (None, 200, False, Transient),  # a 2xx that is not an envelope: proxy page, truncation
        (99999, 200, True, ApiError),
        (None, 200, True, ApiError),  # envelope with code null
        (None, 302, False, ApiError),
        (None, 418, True, ApiError),
    ],
)
def test_classify(
    code: int | None, http: int, envelope: bool, expected: type[YottaError] | None
) -> None:
    assert classify(code, http, has_envelope=envelope) is expected


def test_error_attributes_and_str() -> None:
    err = NotFound("Pod not found", operation="get", code=13000, http_status=200)
    assert (err.code, err.http_status, err.api_message, err.operation) == (
        13000,
        200,
        "Pod not found",
        "get",
    )
    assert str(err) == "yotta get: Pod not found (code=13000, http=200)"
    assert repr(err) == "NotFound('yotta get: Pod not found (code=13000, http=200)')"
    retried = Transient("System error", operation="list", code=10002, attempts=5, retry_after=2)
    assert retried.retry_after == 2 and "attempts=5" in str(retried)
    unknown = OutcomeUnknown("ReadTimeout", operation="create")
    assert isinstance(unknown, Transient) and unknown.kind == "outcome_unknown"
    assert str(YottaError()) == "yotta: YottaError"
