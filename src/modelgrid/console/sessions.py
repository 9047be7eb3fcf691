"""Console sessions in the database (``console_sessions``): sign in, resolve on each page
load, sign out.

A page load costs one statement (the session joined with its key), plus the principal
lookup (``TenancyService.principal_of_hash``: the principal cache, a database read on a
miss) and, at most once a minute, a ``last_seen_at`` update. A session whose time is up, or
whose key is revoked, expired or gone, ends there: the key's every session is deleted and
the browser is sent to sign in again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from modelgrid.console.access import Access, access_of
from modelgrid.core.errors import AuthenticationError, SignInRequiredError
from modelgrid.storage import console_sessions as rows
from modelgrid.storage import repositories as repo
from modelgrid.storage.models import ConsoleSession
from modelgrid.tenancy import audit
from modelgrid.tenancy.audit import aware
from modelgrid.tenancy.lookup import Sessions
from modelgrid.tenancy.service import Principal, TenancyService

TOUCH_EVERY = timedelta(minutes=1)


REASONS = {
    "session_ended": "Your session ended; sign in again.",
    "key_revoked": "The key you signed in with has been revoked; sign in with another key.",
    "key_expired": "The key you signed in with has expired; sign in with another key.",
    "key_refused": "The key you signed in with no longer signs in; sign in with another key.",
}
"""What the sign-in page says for each reason code (the URL carries the code, never text, so
a crafted link cannot put words on the page)."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """A live session: its key's principal, console access and display prefix."""

    principal: Principal
    access: Access
    key_prefix: str


class SessionStore:
    """Args: sessions: the database; tenancy: authentication and the principal cache;
    ttl_s: how long a sign-in lasts."""

    def __init__(self, sessions: Sessions, tenancy: TenancyService, ttl_s: int) -> None:
        self._sessions = sessions
        self._tenancy = tenancy
        self._ttl = timedelta(seconds=ttl_s)

    async def sign_in(
        self, plaintext: str, id_hash: str, address: str, replaces: str | None = None
    ) -> Resolved:
        """Check ``plaintext`` as the model API does, then store a session (its id's hash
        ``id_hash``), end the session it ``replaces`` (the browser's previous one, if any) and
        audit ``console.sign_in``, in one transaction.

        Raises:
            AuthenticationError: a missing, unknown, revoked or expired key.
        """
        principal = await self._tenancy.authenticate(plaintext.strip())
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            key = await repo.get_api_key(session, principal.key_id)
            if key is None:  # deleted since it was cached
                raise AuthenticationError("Incorrect API key provided.")
            await rows.purge_expired(session, now)
            if replaces is not None:
                await rows.end(session, replaces)
            await rows.add(
                session,
                ConsoleSession(
                    id_hash=id_hash,
                    api_key_id=key.id,
                    created_at=now,
                    expires_at=now + self._ttl,
                    last_seen_at=now,
                ),
            )
            access = access_of(key)
            await audit.record(
                session,
                actor=audit.api_actor(key.id),
                action="console.sign_in",
                target=f"api_key:{key.id}",
                details={"workspace_id": key.workspace_id, "access": access, "from": address},
            )
        return Resolved(principal, access, key.prefix)

    async def resolve(self, id_hash: str) -> Resolved:
        """The live session ``id_hash`` names.

        Raises:
            SignInRequiredError: no such session, its time is up, or its key no longer signs in
                (the key's sessions are then ended).
        """
        now = datetime.now(UTC)
        async with self._sessions() as session:
            found = await rows.with_key(session, id_hash)
        if found is None:
            raise SignInRequiredError()
        row, key = found
        if aware(row.expires_at) <= now:
            await self._end(id_hash)
            raise SignInRequiredError("session_ended")
        try:
            principal = await self._tenancy.principal_of_hash(key.id, key.secret_hash)
            if key.revoked_at is not None:  # the row read above is newer than any cache
                raise AuthenticationError("This API key has been revoked.", code="revoked_api_key")
        except AuthenticationError as exc:
            async with self._sessions() as session, session.begin():
                await rows.end_for_key(session, key.id)
            reason = {"revoked_api_key": "key_revoked", "expired_api_key": "key_expired"}
            raise SignInRequiredError(reason.get(exc.code or "", "key_refused")) from None
        if now - aware(row.last_seen_at) >= TOUCH_EVERY:
            async with self._sessions() as session, session.begin():
                await rows.touch(session, id_hash, now)
        return Resolved(principal, access_of(key), key.prefix)

    async def sign_out(self, id_hash: str, resolved: Resolved | None) -> None:
        """End the session (and audit ``console.sign_out`` when it was live)."""
        async with self._sessions() as session, session.begin():
            ended = await rows.end(session, id_hash)
            if ended and resolved is not None:
                await audit.record(
                    session,
                    actor=audit.api_actor(resolved.principal.key_id),
                    action="console.sign_out",
                    target=f"api_key:{resolved.principal.key_id}",
                    details={"workspace_id": resolved.principal.workspace_id},
                )

    async def _end(self, id_hash: str) -> None:
        async with self._sessions() as session, session.begin():
            await rows.end(session, id_hash)


__all__ = ["REASONS", "Resolved", "SessionStore"]
