"""``modelgrid config`` never shows a credential."""

from __future__ import annotations

import json

from modelgrid.config import Settings


def test_masked_hides_passwords_and_credential_query_values() -> None:
    s = Settings(
        database={"url": "postgresql+asyncpg://app:s3cret@db:5432/mg?password=qq"},  # type: ignore[arg-type]
        ratelimit={"redis_url": "redis://:r3dis@cache:6379/0?password=pw3"},  # type: ignore[arg-type]
        upstreams=[
            {"model": "m", "base_url": "http://u:up@x/v1?api_key=sk-q", "api_key": "sk-abc"}
        ],  # type: ignore[list-item]
    )
    text = json.dumps(s.masked())
    for secret in ("s3cret", "qq", "r3dis", "pw3", ":up@", "sk-q", "sk-abc"):
        assert secret not in text, secret
    assert "postgresql+asyncpg://app:**********@db:5432/mg?password=**********" in text
