"""A body nested deeper than the JSON parser goes is a 400 that says so (it said "not valid
JSON"), in each protocol's error shape, on the routes that parse their own bodies and on
those FastAPI parses."""

from __future__ import annotations

import httpx

from modelgrid.protocol.openai.errors import JSON_MAX_DEPTH
from tests.support import ThreadServer, create_key

TOO_DEEP = (
    "The request body is nested too deeply: JSON arrays and objects may nest at most "
    f"{JSON_MAX_DEPTH} levels."
)
TOO_DEEP_FOR_PYTHON = "The request body is nested too deeply."  # FastAPI's json.loads


def nested(levels: int) -> bytes:
    return b'{"model": "fake-model", "messages": ' + b"[" * levels + b"]" * levels + b"}"


def test_a_deep_body_is_a_400_that_says_so(fake_server: ThreadServer) -> None:
    s = fake_server
    tenant = {"Authorization": f"Bearer {s.api_key}", "Content-Type": "application/json"}
    admin_key = create_key(s.settings.database_url, role="admin", workspace="admin").plaintext
    admin = {"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"}
    body = nested(100_000)
    for path, headers, message_of in [
        ("/v1/chat/completions", tenant, lambda b: b["error"]["message"]),
        ("/v1/embeddings", tenant, lambda b: b["error"]["message"]),
        ("/v1/messages", tenant, lambda b: b["error"]["message"]),
        (
            "/api/v1/services/aigc/text-generation/generation",
            tenant,
            lambda b: b["message"],
        ),
    ]:
        r = httpx.post(f"{s.base_url}{path}", content=body, headers=headers, timeout=30)
        assert (r.status_code, message_of(r.json())) == (400, TOO_DEEP), (path, r.text)
    r = httpx.post(f"{s.base_url}/admin/v1/workspaces", content=body, headers=admin, timeout=30)
    assert (r.status_code, r.json()["error"]["message"]) == (400, TOO_DEEP_FOR_PYTHON), r.text
    # at the parser's depth the body parses, and is refused for what it holds instead
    r = httpx.post(
        f"{s.base_url}/v1/chat/completions", content=nested(JSON_MAX_DEPTH - 1), headers=tenant
    )
    assert r.status_code == 400
    assert r.json()["error"]["message"] != TOO_DEEP
    assert r.json()["error"]["param"].startswith("messages")
    # a body that is not JSON at all still says so
    r = httpx.post(f"{s.base_url}/v1/chat/completions", content=b"{nope", headers=tenant)
    assert r.json()["error"]["message"] == "The request body is not valid JSON."
