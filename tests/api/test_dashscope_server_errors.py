"""A 502, 503 or 504 on a DashScope path carries the code Model Studio documents for that
situation (https://www.alibabacloud.com/help/en/model-studio/developer-reference/error-code),
not the catch-all ``InternalError``; the HTTP status and ``Retry-After`` stay modelgrid's."""

from __future__ import annotations

import json

import pytest
from starlette.requests import Request

from modelgrid.api.errors import error_response
from modelgrid.core import errors
from modelgrid.core.errors import ModelgridError

PATH = "/api/v1/services/aigc/text-generation/generation"


def _request(path: str = PATH) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [],
        "state": {"request_id": "req-1"},
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (
            errors.ServiceUnavailableError(
                "No replica of the model 'm' is available.", code="no_healthy_replica"
            ),
            503,
            "ModelUnavailable",
        ),
        (errors.EngineRestartingError("The engine is restarting."), 503, "ModelUnavailable"),
        (errors.UpstreamError("Cannot connect to the upstream of 'm'."), 502, "ModelServiceFailed"),
        (errors.EngineDiedError("The engine died."), 502, "ModelServiceFailed"),
        (errors.UpstreamTimeoutError("Timed out waiting for 'm'."), 504, "RequestTimeOut"),
        (errors.EngineError("The engine failed."), 500, "InternalError"),
    ],
)
def test_server_error_codes(exc: ModelgridError, status: int, code: str) -> None:
    r = error_response(exc, _request())
    assert r.status_code == status
    assert json.loads(bytes(r.body)) == {
        "request_id": "req-1",
        "code": code,
        "message": exc.message,
    }


def test_retry_after_kept_on_a_dashscope_503() -> None:
    exc = errors.ServiceUnavailableError("No replica is ready.", retry_after_s=2.5)
    r = error_response(exc, _request())
    assert (r.status_code, r.headers["retry-after"]) == (503, "3")
    assert json.loads(bytes(r.body))["code"] == "ModelUnavailable"


def test_openai_paths_keep_their_own_codes() -> None:
    exc = errors.UpstreamTimeoutError("Timed out waiting for 'm'.")
    r = error_response(exc, _request("/v1/chat/completions"))
    assert (r.status_code, json.loads(bytes(r.body))["error"]["code"]) == (504, "upstream_timeout")
