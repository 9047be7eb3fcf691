from __future__ import annotations

import hashlib

import pytest

from modelgrid.tenancy import keys


def test_generated_key_format_and_hash() -> None:
    k = keys.generate_key()
    assert k.plaintext.startswith(f"mg-{k.key_id}_")
    assert len(k.key_id) == 12
    assert len(k.plaintext) == 3 + 12 + 1 + 43
    assert k.secret_hash == hashlib.sha256(k.plaintext.encode()).hexdigest()
    assert k.prefix == f"mg-{k.key_id}"
    assert keys.parse_key_id(k.plaintext) == k.key_id
    assert keys.matches(k.plaintext, k.secret_hash)
    assert not keys.matches(k.plaintext + "x", k.secret_hash)


def test_keys_are_unique() -> None:
    assert len({keys.generate_key().plaintext for _ in range(200)}) == 200


def test_malformed_keys_have_no_id() -> None:
    for bad in [
        "",
        "sk-abc",
        "mg-",
        "mg-short_x",
        "mg-ZZZZZZZZZZZZ_secret",
        "mg-0123456789ab",
        "mg-" + "a" * 300,
    ]:
        assert keys.parse_key_id(bad) is None


def test_redact_hides_every_secret_and_keeps_the_public_id() -> None:
    from modelgrid.tenancy.keys import redact

    a = "mg-0123456789ab_" + "Ab_cd-EF" * 5 + "xyz"  # secrets may hold "_" and "-"
    b = "mg-ba9876543210_" + "Q_r-" * 10 + "abc"
    encoded = b.replace("_", "%5F").replace("-", "%2D")  # a client that escapes them
    line = f'"GET /admin/v1/keys/{a} HTTP/1.1" 404 then ?k={encoded}&x=1'
    out = redact(line)
    assert out == (
        '"GET /admin/v1/keys/mg-0123456789ab_… HTTP/1.1" 404 then ?k=mg%2Dba9876543210_…&x=1'
    )
    assert redact("no key here mg-xyz") == "no key here mg-xyz"


def test_the_access_log_never_writes_a_secret(capfd: pytest.CaptureFixture[str]) -> None:
    import logging.config

    from modelgrid.api.logs import log_config
    from modelgrid.tenancy.keys import generate_key

    key = generate_key()
    logging.config.dictConfig(log_config())
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5",
        "GET",
        f"/admin/v1/keys/{key.plaintext}",
        "1.1",
        404,
    )
    err = capfd.readouterr()
    assert key.plaintext not in err.out + err.err
    assert f"/admin/v1/keys/{key.prefix}_…" in err.out + err.err
