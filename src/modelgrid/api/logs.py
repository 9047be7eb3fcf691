"""uvicorn's logging with key secrets redacted.

The access log writes every request's path; a key pasted into a URL (``GET
/admin/v1/keys/mg-…_secret`` instead of its id) would otherwise land in the log in clear.
``RedactKeys`` rewrites each record's message arguments with ``tenancy.keys.redact``.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from uvicorn.config import LOGGING_CONFIG

from modelgrid.tenancy.keys import redact


class RedactKeys(logging.Filter):
    """Hides key secrets in a record's message and arguments (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration with ``RedactKeys`` on every handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_keys"] = {"()": RedactKeys}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_keys")
    return config


__all__ = ["RedactKeys", "log_config"]
