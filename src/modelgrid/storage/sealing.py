"""Secrets kept in the database sealed, opened only where they are used.

An app's plugin header values (``protocol.app_tools.AppTool.headers``: the service-level
credentials the platform sends to a plugin) are written sealed with Fernet (AES-128-CBC and
HMAC-SHA256, the ``cryptography`` package's recipe, https://github.com/fernet/spec), so a copy
of the database or a backup does not hold them in clear; LiteLLM seals stored provider keys
the same way with its ``LITELLM_SALT_KEY``. A sealed value reads ``sealed:v1:<token>``; a
value written before sealing existed is plaintext and is read as it is, and sealed on the
app's next write.

The key: ``MODELGRID_SECRET_KEY`` (a Fernet key: 32 bytes, URL-safe base64), else the file
``<data_dir>/secret.key``, created with mode 0600 on first use. Every process that shares a
database (gateways, workers, the CLI) needs the same key; one that cannot open a value gets
``SealedSecretError`` (a 503 naming the setting), never the ciphertext.
"""

from __future__ import annotations

import os
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from modelgrid.config import Settings
from modelgrid.core.errors import SealedSecretError

PREFIX = "sealed:v1:"
KEY_FILE = "secret.key"


class Sealer:
    """Seals and opens strings with one Fernet key.

    Args:
        key: A Fernet key (32 bytes, URL-safe base64).

    Raises:
        ValueError: ``key`` is no Fernet key.
    """

    def __init__(self, key: bytes | str) -> None:
        self._fernet = Fernet(key)

    def seal(self, value: str) -> str:
        """``value`` sealed (``sealed:v1:<token>``), whatever it holds: a client's value that
        reads like a sealed one is sealed too, and opens to itself."""
        return PREFIX + self._fernet.encrypt(value.encode()).decode("ascii")

    def open(self, stored: str) -> str:
        """The secret ``stored`` holds (a plaintext value of before sealing: itself).

        Raises:
            SealedSecretError: sealed with another key, or damaged.
        """
        if not stored.startswith(PREFIX):
            return stored
        try:
            return self._fernet.decrypt(stored[len(PREFIX) :]).decode()
        except (InvalidToken, UnicodeDecodeError):
            raise SealedSecretError(
                "A stored secret (an app plugin's header value) was sealed with another key: "
                "give every gateway, worker and CLI that shares this database the same "
                "MODELGRID_SECRET_KEY."
            ) from None

    def seal_headers(self, tool: dict[str, Any]) -> dict[str, Any]:
        """A stored tool object (``AppTool.model_dump()``) with its ``headers`` values sealed."""
        headers = tool.get("headers") or {}
        return {**tool, "headers": {k: self.seal(v) for k, v in headers.items()}}

    def open_headers(self, tool: dict[str, Any]) -> dict[str, Any]:
        """A stored tool object with its ``headers`` values opened (``open``'s errors)."""
        headers = tool.get("headers") or {}
        return {**tool, "headers": {k: self.open(v) for k, v in headers.items()}}


def sealer_for(settings: Settings) -> Sealer:
    """The process's ``Sealer``: ``settings.secret_key`` (``MODELGRID_SECRET_KEY``) when set,
    else the key in ``<data_dir>/secret.key``, which the first process to need it writes
    (mode 0600).

    Raises:
        ValueError: ``secret_key`` or the key file's content is no Fernet key (names which).
        OSError: the key file cannot be read or written.
    """
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        try:
            return Sealer(settings.secret_key.get_secret_value().strip())
        except ValueError:
            raise ValueError(
                "MODELGRID_SECRET_KEY is no Fernet key (32 bytes, URL-safe base64, as "
                "<data_dir>/secret.key holds)"
            ) from None
    path = settings.data_dir / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # whole or not at all; the first process's key wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        return Sealer(text)
    except ValueError:
        raise ValueError(f"{path} holds no Fernet key (32 bytes, URL-safe base64)") from None


__all__ = ["KEY_FILE", "PREFIX", "Sealer", "sealer_for"]
