"""The console's session ids, CSRF tokens and sign-in throttle.

- A session id is 32 random bytes (``secrets.token_urlsafe``) in the ``mg_console`` cookie
  (``HttpOnly``, ``SameSite=Lax``, ``Path`` the console's root, ``Secure`` over https); the
  database keeps only its SHA-256 (``session_hash``), so a read of the table signs nobody in.
- The CSRF token of a session is HMAC-SHA256 of a fixed label under the session id: only a
  page the server rendered for that session can hold it, and nothing needs storing. Every
  POST must carry it (form field ``csrf_token`` or header ``X-CSRF-Token``, which htmx sends);
  it is compared in constant time (OWASP's synchronizer-token pattern).
- Before a session exists, the sign-in form is protected by a double-submit cookie
  (``mg_console_pre``, a random token also put in the form), so another site cannot sign a
  browser in under the attacker's key (login CSRF).
- ``SignInThrottle``: failed sign-ins per client address per minute; past the limit every
  attempt is refused, right key or wrong, until the window has room again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable

SESSION_COOKIE = "mg_console"
PRE_COOKIE = "mg_console_pre"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
WINDOW_S = 60.0
MAX_ADDRESSES = 10_000


def new_session_id() -> str:
    """A new session id: 256 random bits, URL-safe text."""
    return secrets.token_urlsafe(32)


def session_hash(session_id: str) -> str:
    """Hex SHA-256 of a session id (what the database keeps)."""
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def csrf_token(session_id: str) -> str:
    """The CSRF token of a session (hex HMAC-SHA256)."""
    return hmac.new(session_id.encode("utf-8"), b"modelgrid-console-csrf", "sha256").hexdigest()


def same_token(presented: str | None, expected: str) -> bool:
    """Constant-time comparison; a missing token never matches."""
    if not presented:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


class SignInThrottle:
    """Failed sign-ins per client address in a sliding minute.

    Args:
        failures_per_window: Failures an address may make within ``window_s``.
        window_s: The window, seconds.
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        failures_per_window: int,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = failures_per_window
        self.window_s = window_s
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str) -> deque[float]:
        seen = self._failures.get(address)
        if seen is None:
            return deque()
        cutoff = self.clock() - self.window_s
        while seen and seen[0] <= cutoff:
            seen.popleft()
        if not seen:
            del self._failures[address]
        return seen

    def retry_after_s(self, address: str) -> float | None:
        """Seconds until ``address`` may try again (``None``: it may now)."""
        seen = self._recent(address)
        if len(seen) < self.limit:
            return None
        return max(0.0, seen[0] + self.window_s - self.clock())

    def failed(self, address: str) -> None:
        """Count one failed sign-in of ``address`` (the oldest addresses are forgotten past
        ``MAX_ADDRESSES``, so memory stays bounded)."""
        seen = self._failures.setdefault(address, deque())
        self._failures.move_to_end(address)
        seen.append(self.clock())
        while len(seen) > self.limit:
            seen.popleft()
        while len(self._failures) > MAX_ADDRESSES:
            self._failures.popitem(last=False)


__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "PRE_COOKIE",
    "SESSION_COOKIE",
    "SignInThrottle",
    "csrf_token",
    "new_session_id",
    "same_token",
    "session_hash",
]
