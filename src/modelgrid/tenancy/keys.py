"""API key format, hashing and constant-time verification.

A key reads ``mg-<id>_<secret>``: ``id`` is 12 public hex characters (the lookup key, also
shown as the display prefix ``mg-<id>``) and ``secret`` 43 URL-safe characters from
``secrets.token_urlsafe(32)`` (256 bits). Only SHA-256 of the whole key is stored: with 256
bits of entropy a fast hash is sufficient (GitHub and Stripe store tokens the same way), and
verification compares digests with ``hmac.compare_digest`` so timing reveals nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

KEY_PREFIX = "mg-"
_ID_HEX = 12
# A key's secret part wherever it appears in text (URL-encoded or not): what ``redact`` hides.
_SECRET_IN_TEXT = re.compile(
    r"(mg(?:-|%2[Dd])[0-9a-f]{12})(?:_|%5[Ff])(?:[A-Za-z0-9_\-]|%[0-9A-Fa-f]{2}){8,}"
)


def redact(text: str) -> str:
    """``text`` with the secret of every key in it replaced by ``…`` (the public id stays), for
    anything that may end up in a log: ``mg-0123456789ab_Zx…`` → ``mg-0123456789ab_…``."""
    return _SECRET_IN_TEXT.sub(r"\1_…", text) if "mg" in text else text


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key; ``plaintext`` is shown once and never stored."""

    key_id: str
    plaintext: str
    secret_hash: str

    @property
    def prefix(self) -> str:
        return f"{KEY_PREFIX}{self.key_id}"


def hash_key(plaintext: str) -> str:
    """Hex SHA-256 of the whole key string."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def generate_key() -> NewKey:
    key_id = secrets.token_hex(_ID_HEX // 2)
    plaintext = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return NewKey(key_id=key_id, plaintext=plaintext, secret_hash=hash_key(plaintext))


def parse_key_id(plaintext: str) -> str | None:
    """The public id inside a well-formed key, or None for anything malformed."""
    if not plaintext.startswith(KEY_PREFIX) or len(plaintext) > 200:
        return None
    key_id, sep, secret = plaintext[len(KEY_PREFIX) :].partition("_")
    if not sep or len(key_id) != _ID_HEX or not secret:
        return None
    if any(c not in "0123456789abcdef" for c in key_id):
        return None
    return key_id


def matches(plaintext: str, secret_hash: str) -> bool:
    """Constant-time comparison of ``plaintext``'s hash with the stored one."""
    return hmac.compare_digest(hash_key(plaintext), secret_hash)


__all__ = [
    "KEY_PREFIX",
    "NewKey",
    "generate_key",
    "hash_key",
    "matches",
    "parse_key_id",
    "redact",
]
