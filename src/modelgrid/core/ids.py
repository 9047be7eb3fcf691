"""Identifiers: request ids and OpenAI-style object ids (``chatcmpl-…``)."""

from __future__ import annotations

import secrets
import uuid


def new_request_id() -> str:
    """A fresh request id: 32 lowercase hex characters (a UUID4 without dashes)."""
    return uuid.uuid4().hex


def completion_id(prefix: str = "chatcmpl") -> str:
    """An object id such as ``chatcmpl-5f0c…`` (prefix, dash, 24 random hex characters)."""
    return f"{prefix}-{secrets.token_hex(12)}"
