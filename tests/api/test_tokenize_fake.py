"""vLLM's ``/tokenize`` and ``/detokenize`` over a real uvicorn server and the scripted
FakeEngine (a word is a token), and the routed engine's tokenization under residency."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from modelgrid.core.errors import PermissionDeniedError, ServiceUnavailableError, UpstreamError
from modelgrid.core.types import ChatMessage, InferenceRequest, RoutingHints
from modelgrid.engines.fake import FIRST_TOKEN_ID, FakeEngine
from modelgrid.routing.engine import RoutedEngine
from modelgrid.routing.router import Router
from modelgrid.routing.topology import Deployment, Region, Replica, Topology
from tests.support import ThreadServer, db_execute, usage_rows

MODEL = "fake-model"
MSG = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]},
]


def post(server: ThreadServer, path: str, body: Any, **headers: str) -> httpx.Response:
    head = headers or {"Authorization": f"Bearer {server.api_key}"}  # type: ignore[attr-defined]
    return httpx.post(f"{server.base_url}{path}", json=body, headers=head)


def test_tokenize_detokenize_round_trip(fake_server: ThreadServer) -> None:
    r = post(fake_server, "/tokenize", {"model": MODEL, "prompt": "the cat saw the dog"})
    assert r.status_code == 200, r.text
    first = FIRST_TOKEN_ID
    tokens = [first, first + 1, first + 2, first, first + 3]
    assert r.json() == {"count": 5, "max_model_len": 64, "tokens": tokens}
    back = post(fake_server, "/detokenize", {"model": MODEL, "tokens": tokens})
    assert back.status_code == 200 and back.json() == {"prompt": "the cat saw the dog"}
    key = {"x-api-key": fake_server.api_key}  # type: ignore[attr-defined]
    assert post(fake_server, "/detokenize", {"model": MODEL, "tokens": [first]}, **key).json() == {
        "prompt": "the"
    }
    unknown = post(fake_server, "/detokenize", {"model": MODEL, "tokens": [7]})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "tokens"
    assert usage_rows(fake_server, expect=0, timeout_s=0.3) == []  # not billed


def test_count_equals_a_chat_calls_prompt_tokens(fake_server: ThreadServer) -> None:
    counted = post(fake_server, "/tokenize", {"model": MODEL, "messages": MSG})
    assert counted.status_code == 200, counted.text
    chat = post(
        fake_server, "/v1/chat/completions", {"model": MODEL, "messages": MSG, "max_tokens": 2}
    )
    assert chat.status_code == 200
    (row,) = usage_rows(fake_server, expect=1)
    assert (
        counted.json()["count"]
        == row["prompt_tokens"]
        == chat.json()["usage"]["prompt_tokens"]
        == 8
    )
    no_gen = {"model": MODEL, "messages": MSG, "add_generation_prompt": False, "extra": 1}
    assert post(fake_server, "/tokenize", no_gen).json()["count"] == 8  # the fake has no template


def test_unknown_model_is_404(fake_server: ThreadServer) -> None:
    for path, body in (
        ("/tokenize", {"model": "nope", "prompt": "hi"}),
        ("/detokenize", {"model": "nope", "tokens": [1]}),
    ):
        r = post(fake_server, path, body)
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/tokenize", {"model": MODEL}, None),  # neither prompt nor messages
        ("/tokenize", {"model": MODEL, "prompt": "a", "messages": MSG}, None),
        ("/tokenize", {"prompt": "a"}, "model"),
        ("/tokenize", {"model": MODEL, "prompt": 3}, "prompt"),
        ("/tokenize", {"model": MODEL, "prompt": "a", "return_token_strs": True}, "return_token_strs"),
        ("/tokenize", {"model": MODEL, "messages": [*MSG, {"role": "assistant", "content": "b"}],
                       "continue_final_message": True, "add_generation_prompt": True},
         "continue_final_message"),
        ("/tokenize", {"model": MODEL, "messages": MSG, "continue_final_message": True},
         "continue_final_message"),  # the final message is the user's: nothing to go on with
        ("/tokenize", {"model": MODEL, "messages": [{"role": "bot", "content": "a"}]}, "messages[0].role"),
        ("/detokenize", {"model": MODEL, "tokens": ["a"]}, "tokens[0]"),
        ("/detokenize", {"model": MODEL}, "tokens"),
    ],
)  # fmt: skip
def test_bad_body_is_400(
    fake_server: ThreadServer, path: str, body: dict[str, Any], param: str | None
) -> None:
    r = post(fake_server, path, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["param"] == param


def test_authenticated_and_scope_checked(fake_server: ThreadServer) -> None:
    body = {"model": MODEL, "prompt": "hi"}
    assert post(fake_server, "/tokenize", body, **{"x-other": "1"}).status_code == 401
    assert post(fake_server, "/tokenize", body, Authorization="Bearer mg-no_no").status_code == 401
    key_id = fake_server.api_key.split("_")[0].removeprefix("mg-")  # type: ignore[attr-defined]
    db_execute(
        fake_server,
        "UPDATE api_keys SET allowed_models = :m WHERE id = :id",
        m='["other-model"]',
        id=key_id,
    )
    denied = post(fake_server, "/tokenize", body)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "model_not_allowed"


class _Refusing(FakeEngine):
    """A replica whose tokenizer is unreachable (a connection refused: retryable)."""

    async def tokenize(self, request: InferenceRequest, options: Any = None) -> list[int]:
        raise UpstreamError("refused", retryable=True)


def _routed(engines: dict[str, FakeEngine]) -> RoutedEngine:
    regions = ("eu", "us")
    topology = Topology(
        tuple(Region(r, jurisdiction="DE" if r == "eu" else "US") for r in regions),
        tuple(Deployment(MODEL, rid, (Replica(rid, base_url="http://x/v1"),)) for rid in engines),
        gateway_region="eu",
    )
    router = Router(topology)
    return RoutedEngine(
        MODEL, router, engines.get, lambda: engines["eu"].card, lambda: list(engines)
    )


def _request(hints: RoutingHints) -> InferenceRequest:
    return InferenceRequest("r", MODEL, messages=[ChatMessage("user", "a b c")], routing=hints)


def test_routed_tokenize_stays_in_the_keys_regions() -> None:
    engines = {"eu": FakeEngine(), "us": FakeEngine()}
    routed = _routed(engines)
    us_only = RoutingHints(allowed_regions=frozenset({"us"}))
    for _ in range(5):
        assert len(asyncio.run(routed.tokenize(_request(us_only)))) == 3
    assert (len(engines["eu"].vocabulary), len(engines["us"].vocabulary)) == (0, 3)
    text = asyncio.run(routed.detokenize([FIRST_TOKEN_ID], us_only))
    assert text == "a"
    with pytest.raises(PermissionDeniedError):
        asyncio.run(routed.tokenize(_request(RoutingHints(allowed_regions=frozenset({"ap"})))))
    de_only = RoutingHints(allowed_jurisdictions=frozenset({"DE"}))
    asyncio.run(routed.tokenize(_request(de_only)))
    assert len(engines["eu"].vocabulary) == 3


def test_routed_tokenize_fails_over_within_the_allowed_set() -> None:
    engines: dict[str, FakeEngine] = {"eu": _Refusing(), "us": FakeEngine()}
    routed = _routed(engines)
    prefer_eu = RoutingHints(preferred_region="eu")
    assert len(asyncio.run(routed.tokenize(_request(prefer_eu)))) == 3
    assert len(engines["us"].vocabulary) == 3
    with pytest.raises(ServiceUnavailableError):  # no other allowed replica: 503, as generation
        asyncio.run(routed.tokenize(_request(RoutingHints(allowed_regions=frozenset({"eu"})))))
