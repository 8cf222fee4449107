"""The SDK's exception tree: status/errorCode mapping, tolerant bodies, httpx mapping."""

from __future__ import annotations

import json

import httpx
import pytest

from promoflow.client import (
    AlreadyRedeemedError,
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectionFailedError,
    ContactNotFoundError,
    ForbiddenError,
    IdempotencyKeyInUseError,
    IdempotencyKeyMismatchError,
    NotFoundError,
    PromoflowClientError,
    PromotionExpiredError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    UnprocessableError,
)
from promoflow.client._exceptions import _BY_CODE, error_from_response, transport_error_from_httpx
from promoflow.client._settle import classify
from promoflow.wire.errors import HTTP_STATUS, ErrorCode
from promoflow.wire.xml import Verdict


def _error(status: int, body: object = None, headers: dict[str, str] | None = None) -> ApiError:
    if isinstance(body, bytes):
        content = body
    elif body is None:
        content = b""
    else:
        content = json.dumps(body).encode()
    return error_from_response(status, httpx.Headers(headers or {}), content)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, ForbiddenError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, UnprocessableError),
        (429, RateLimitedError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (599, ServerError),
        (405, ApiError),
        (415, ApiError),
    ],
)
def test_status_maps_to_class(status: int, cls: type[ApiError]) -> None:
    error = _error(status, {"statusCode": status, "errorCode": "Something", "message": "text"})
    assert type(error) is cls
    assert isinstance(error, PromoflowClientError)
    assert (error.status, error.error_code, error.message) == (status, "Something", "text")


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (409, "PromotionAlreadyRedeemed", AlreadyRedeemedError),
        (409, "PromotionExpired", PromotionExpiredError),
        (409, "IdempotencyKeyInUse", IdempotencyKeyInUseError),
        (422, "IdempotencyKeyMismatch", IdempotencyKeyMismatchError),
        (404, "ContactNotFound", ContactNotFoundError),
        # A code only means the specific class with its own status.
        (400, "PromotionAlreadyRedeemed", BadRequestError),
    ],
)
def test_error_code_maps_to_specific_class(status: int, code: str, cls: type[ApiError]) -> None:
    error = _error(status, {"statusCode": status, "errorCode": code, "message": "m"})
    assert type(error) is cls
    assert error.error_code == code


def test_every_specific_class_is_the_code_the_server_answers_with_at_its_status() -> None:
    # The classes follow the one table of codes and statuses the server answers from (promoflow.wire.errors).
    for code, cls in _BY_CODE.items():
        status = HTTP_STATUS[code]
        assert type(_error(status, {"statusCode": status, "errorCode": code.value, "message": "m"})) is cls
        assert issubclass(
            cls, type(_error(status, {"errorCode": "Other"}))
        )  # a refinement of its status class


def test_a_malformed_assignment_id_is_a_bad_request_and_an_invalid_change() -> None:
    # InvalidPromotionIdNoData is a 400 (the SDK used to look for it under 404, as "not found").
    status = HTTP_STATUS[ErrorCode.INVALID_PROMOTION_ID_NO_DATA]
    error = _error(
        status, {"statusCode": status, "errorCode": "InvalidPromotionIdNoData", "message": "not a GUID"}
    )
    assert status == 400 and type(error) is BadRequestError
    assert classify(error).verdict == Verdict.INVALID.value
    for code in (ErrorCode.PROMOTION_NOT_FOUND, ErrorCode.CONTACT_NOT_FOUND, ErrorCode.PROMOTION_EXPIRED):
        answered = _error(HTTP_STATUS[code], {"errorCode": code.value, "message": "m"})
        assert classify(answered).verdict == (
            "expired" if code is ErrorCode.PROMOTION_EXPIRED else "notFound"
        )
    # A code at a status it is never answered with says nothing about the change (a proxy's 404 page).
    assert classify(_error(404, {"errorCode": "PromotionExpired"})).deferred


def test_already_redeemed_is_a_conflict() -> None:
    error = _error(409, {"statusCode": 409, "errorCode": "PromotionAlreadyRedeemed", "message": "done"})
    assert isinstance(error, ConflictError)
    assert str(error) == "409 PromotionAlreadyRedeemed: done"


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"", "ServiceUnavailable", "ServiceUnavailable"),
        (b"upstream connect error", "ServiceUnavailable", "upstream connect error"),
        (
            b"<html><body>Bad gateway</body></html>",
            "ServiceUnavailable",
            "<html><body>Bad gateway</body></html>",
        ),
        ({"Message": "An error has occurred."}, "ServiceUnavailable", "An error has occurred."),
        ("just a json string", "ServiceUnavailable", "just a json string"),
        ({"type": "about:blank", "title": "Overloaded", "detail": "try later"}, "Overloaded", "try later"),
        ({"error": {"code": "Busy", "message": "nested"}}, "Busy", "nested"),
        ([1, 2, 3], "ServiceUnavailable", "[1, 2, 3]"),
    ],
)
def test_tolerant_bodies(body: object, code: str, message: str) -> None:
    error = _error(503, body)
    assert isinstance(error, ServerError)
    assert (error.error_code, error.message) == (code, message)


def test_retry_after_and_request_id_are_read_from_headers() -> None:
    error = _error(429, None, {"Retry-After": "7", "X-Request-Id": "req-1"})
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == 7.0
    assert error.request_id == "req-1"
    assert _error(429).retry_after is None


def test_body_text_is_kept_and_truncated() -> None:
    error = _error(500, b"x" * 5000)
    assert error.body is not None and len(error.body) == 2000


def test_unknown_status_phrase() -> None:
    assert _error(499).error_code == "Http499"


_REQUEST = httpx.Request("POST", "http://127.0.0.1/api/v2/receipts")


@pytest.mark.parametrize(
    ("exc", "cls", "reached"),
    [
        (httpx.ConnectError("refused", request=_REQUEST), ConnectionFailedError, False),
        (httpx.ConnectTimeout("slow connect", request=_REQUEST), RequestTimeoutError, False),
        (httpx.PoolTimeout("pool", request=_REQUEST), RequestTimeoutError, False),
        (httpx.ReadTimeout("slow answer", request=_REQUEST), RequestTimeoutError, True),
        (httpx.WriteTimeout("slow send", request=_REQUEST), RequestTimeoutError, True),
        (httpx.ReadError("reset", request=_REQUEST), ConnectionFailedError, True),
        (httpx.WriteError("broken pipe", request=_REQUEST), ConnectionFailedError, True),
        (httpx.RemoteProtocolError("server disconnected", request=_REQUEST), ConnectionFailedError, True),
        (httpx.UnsupportedProtocol("ftp://", request=_REQUEST), TransportError, False),
        (httpx.ProxyError("proxy", request=_REQUEST), TransportError, False),
    ],
)
def test_httpx_errors_map_with_reach(
    exc: httpx.TransportError, cls: type[TransportError], reached: bool
) -> None:
    error = transport_error_from_httpx(exc)
    assert type(error) is cls
    assert error.may_have_reached_server is reached
    assert isinstance(error, PromoflowClientError)
