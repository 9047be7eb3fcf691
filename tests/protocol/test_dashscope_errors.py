"""Every client error (4xx) gets a DashScope code of its own kind, never the 500 code."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelgrid.core import errors
from modelgrid.core.errors import ModelgridError
from modelgrid.protocol.dashscope.errors import INTERNAL_ERROR, error_code


def _classes(root: type[ModelgridError]) -> Iterator[type[ModelgridError]]:
    for cls in root.__subclasses__():
        yield cls
        yield from _classes(cls)


def _instance(cls: type[ModelgridError]) -> ModelgridError:
    """One instance of ``cls``, whatever its constructor asks for."""
    if cls is errors.BatchInputError:
        return errors.BatchInputError("m", code="duplicate_custom_id", line=1)
    if cls is errors.UpstreamClientError:
        return errors.UpstreamClientError("m", status=422)
    if cls in (errors.SignInRequiredError, errors.ServerShutdownError):
        return cls()
    return cls("m")


CLIENT_ERRORS = sorted(
    (c for c in _classes(ModelgridError) if 400 <= _instance(c).status < 500),
    key=lambda c: c.__name__,
)


def test_the_walk_finds_the_client_errors() -> None:
    names = {c.__name__ for c in CLIENT_ERRORS}
    assert {"RequestTooLargeError", "ConflictError", "MethodNotAllowedError"} <= names
    assert "EngineError" not in names and len(names) >= 20


@pytest.mark.parametrize("cls", CLIENT_ERRORS, ids=lambda c: c.__name__)
def test_no_client_error_is_internal_error(cls: type[ModelgridError]) -> None:
    assert error_code(_instance(cls)) != INTERNAL_ERROR


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.RequestTooLargeError("too big"), "BadRequest.TooLarge"),
        (errors.UpstreamClientError("too big", status=413), "BadRequest.TooLarge"),
        (errors.UpstreamClientError("gone", status=410), "InvalidParameter"),
        (errors.MethodNotAllowedError("Method Not Allowed"), "InvalidURL"),
        (errors.RouteNotFoundError("Unknown route."), "InvalidURL"),
        (errors.ConflictError("exists"), "InvalidParameter"),
        (errors.LeaseLostError("lost"), "InvalidParameter"),
        (errors.SignInRequiredError(), "InvalidApiKey"),
        (errors.ModelNotFoundError("m"), "ModelNotFound"),
        (errors.EngineError("boom"), "InternalError"),
        (errors.ServiceUnavailableError("none ready"), "ModelUnavailable"),
        (errors.ServerShutdownError(), "ModelUnavailable"),
        (errors.ModelIntegrityError("bad sha"), "ModelUnavailable"),
        (errors.UpstreamError("bad gateway"), "ModelServiceFailed"),
        (errors.UpstreamTimeoutError("slow"), "RequestTimeOut"),
    ],
)
def test_codes(exc: ModelgridError, code: str) -> None:
    assert error_code(exc) == code
