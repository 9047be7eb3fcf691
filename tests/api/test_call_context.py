"""What the edge reads from a request into its ``CallContext``."""

from __future__ import annotations

from starlette.requests import Request

from modelgrid.api.deps import call_context


def _request(*headers: tuple[bytes, bytes]) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "headers": list(headers)})


async def test_a_gateways_batch_line_is_preemptible_on_the_worker() -> None:
    assert (await call_context(_request((b"x-modelgrid-priority", b"batch")))).preemptible
    assert not (await call_context(_request())).preemptible
    assert not (await call_context(_request((b"x-modelgrid-priority", b"high")))).preemptible


async def test_the_requested_region_is_read_and_bounded() -> None:
    ctx = await call_context(_request((b"x-modelgrid-region", b" eu-west-1 ")))
    assert ctx.requested_region == "eu-west-1"
    assert (
        await call_context(_request((b"x-modelgrid-region", b"x" * 100)))
    ).requested_region == "x" * 64
