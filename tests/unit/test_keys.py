from __future__ import annotations

import hashlib

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
