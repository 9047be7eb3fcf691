"""The tenancy service: authenticate callers, admit requests, record usage.

``authenticate`` looks the key up by its public id (primary key) and compares hashes in
constant time. Principals are cached for ``auth.cache_ttl_s`` (``tenancy.authcache``): a
revocation or change made on this machine applies at the next request (the epoch file), one
made on another machine sharing the database when its change counter is seen (the gateway's
``control.sync.ChangeFollower``, within a second), at the latest within the cache's time to
live.
"""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from modelgrid.core.errors import AuthenticationError, PermissionDeniedError
from modelgrid.storage import repositories as repo
from modelgrid.storage.models import ApiKey, Workspace
from modelgrid.tenancy import keys
from modelgrid.tenancy.authcache import PrincipalCache, bump_epoch
from modelgrid.tenancy.events import UsageEvent
from modelgrid.tenancy.limits import ScopeLimits
from modelgrid.tenancy.metering import UsageWriter
from modelgrid.tenancy.pricing import PriceBook, PriceEntry
from modelgrid.tenancy.ratelimit import Admission, InProcessLimiter, RateLimiter


def _aware(dt: datetime) -> datetime:
    """SQLite returns naive datetimes; they are stored in UTC."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller with its effective scope.

    Attributes:
        key_id / workspace_id / role / name: Who.
        allowed_models: Models the key may call (None = all).
        allowed_regions: Regions the request may run in: the workspace's set narrowed by the
            key's (None = any region).
        allowed_jurisdictions: Jurisdictions whose regions it may run in, narrowed the same
            way (None = any); a region must also pass ``allowed_regions``.
        home_region: The workspace's preferred region.
        currency: The workspace's billing currency.
        limits: Limits per level (workspace first, then key); levels without limits omitted.
    """

    key_id: str
    workspace_id: str
    role: str
    name: str
    allowed_models: frozenset[str] | None = None
    allowed_regions: frozenset[str] | None = None
    allowed_jurisdictions: frozenset[str] | None = None
    home_region: str = "local"
    currency: str = "USD"
    limits: tuple[ScopeLimits, ...] = ()

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_use_model(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models


def _narrow(outer: list[str] | None, inner: list[str] | None) -> frozenset[str] | None:
    if outer is None and inner is None:
        return None
    if outer is None:
        return frozenset(inner or ())
    if inner is None:
        return frozenset(outer)
    return frozenset(outer) & frozenset(inner)


def _check_usable(row: ApiKey) -> None:
    """Raises: AuthenticationError: the key is revoked or expired."""
    if row.revoked_at is not None:
        raise AuthenticationError("This API key has been revoked.", code="revoked_api_key")
    if row.expires_at is not None and _aware(row.expires_at) <= datetime.now(UTC):
        raise AuthenticationError("This API key has expired.", code="expired_api_key")


def _principal_of(row: ApiKey, ws: Workspace) -> tuple[Principal, datetime | None]:
    """A key's principal (its scope narrowed by its workspace's) and its expiry."""
    tag = f"ws:{ws.id}"  # both levels in the workspace's shard (one Redis Cluster slot)
    levels = (
        ScopeLimits.from_row(tag, ws, tag),
        ScopeLimits.from_row(f"key:{row.id}", row, tag),
    )
    principal = Principal(
        key_id=row.id,
        workspace_id=row.workspace_id,
        role=row.role,
        name=row.name,
        allowed_models=frozenset(row.allowed_models) if row.allowed_models is not None else None,
        allowed_regions=_narrow(ws.allowed_regions, row.allowed_regions),
        allowed_jurisdictions=_narrow(ws.allowed_jurisdictions, row.allowed_jurisdictions),
        home_region=ws.home_region,
        currency=ws.currency,
        limits=tuple(lv for lv in levels if not lv.unlimited),
    )
    return principal, _aware(row.expires_at) if row.expires_at is not None else None


class TenancyService:
    """Authentication, admission, pricing and metering for the serving layer.

    Args:
        sessions: Async session factory.
        usage: The batch writer (None: usage is not recorded, e.g. in CLI-only use).
        limiter: Rate-limit backend (None: an in-process one).
        prices: The price book snapshot (reload with ``reload_prices``).
        auth_cache: Cache of authenticated principals (``tenancy.authcache``; None: every
            request reads the database).
    """

    def __init__(
        self,
        sessions: async_sessionmaker[Any],
        usage: UsageWriter | None = None,
        limiter: RateLimiter | None = None,
        prices: PriceBook | None = None,
        auth_cache: PrincipalCache[tuple[Principal, datetime | None]] | None = None,
    ) -> None:
        self._sessions = sessions
        self.usage = usage
        self.limiter: RateLimiter = limiter or InProcessLimiter(seed=self.month_spend)
        self.prices = prices or PriceBook()
        self.auth_cache: PrincipalCache[tuple[Principal, datetime | None]] = (
            auth_cache or PrincipalCache(0)
        )
        self._settling: set[asyncio.Task[None]] = set()

    def invalidate_auth(self) -> None:
        """Keys or workspaces changed: drop cached principals here and in every process that
        shares the epoch file."""
        self.auth_cache.clear()
        bump_epoch(self.auth_cache.epoch_path)

    async def month_spend(self, scope: str, month: str) -> tuple[int, int]:
        """(cost_micros, tokens) in the ledger for ``scope`` (``ws:<id>``/``key:<id>``) in
        ``month`` (``YYYY-MM``, UTC) — seeds the limiter's monthly counters."""
        level, _, ident = scope.partition(":")
        async with self._sessions() as session:
            return await repo.month_totals(
                session,
                month,
                workspace_id=ident if level == "ws" else None,
                api_key_id=ident if level == "key" else None,
            )

    async def reload_prices(self) -> None:
        async with self._sessions() as session:
            rows = await repo.price_entries(session)
        self.prices = PriceBook(
            PriceEntry(
                price_id=r.id,
                model=r.model,
                region=r.region,
                currency=r.currency,
                input_micros_per_1m=r.input_micros_per_1m,
                cached_input_micros_per_1m=r.cached_input_micros_per_1m,
                output_micros_per_1m=r.output_micros_per_1m,
                effective_from=_aware(r.effective_from),
                batch_percent=r.batch_percent,
            )
            for r in rows
        )

    async def admit(
        self,
        principal: Principal,
        request_id: str,
        tokens: int,
        *,
        model: str | None = None,
        region: str | None = None,
    ) -> Admission | None:
        """Admit a request at every level of ``principal`` (None when it has no limits),
        reserving its worst case against the monthly budgets until it settles: ``tokens``, and
        under a money budget those tokens at the higher of the model's input and output rates
        in ``region`` (``ratelimit``: budgets hold under concurrency).

        Raises:
            RateLimitError / QuotaExceededError: see ``RateLimiter.acquire``.
        """
        if not principal.limits:
            return None
        reserve = 0
        if model is not None and any(
            lim.monthly_budget_micros is not None for lim in principal.limits
        ):
            entry = self.prices.lookup(model, region, datetime.now(UTC))
            if entry is not None:
                rate = max(entry.input_micros_per_1m, entry.output_micros_per_1m)
                reserve = -(-tokens * rate // 1_000_000)
        return await self.limiter.acquire(request_id, principal.limits, tokens, reserve)

    def finish(self, principal: Principal, admissions: list[Admission], event: UsageEvent) -> None:
        """Price and record one request's usage, then settle its admissions (in the
        background). Never blocks: the record is spooled, the settlement is a task."""
        event = self.priced(event)
        self.record(event)
        self.settle(admissions, event)

    def priced(self, event: UsageEvent, *, batch: bool = False) -> UsageEvent:
        """``event`` with its cost from the price book (a batch line's at the batch rate)."""
        cost = self.prices.price(
            event.model,
            event.region,
            event.created_at,
            event.prompt_tokens,
            event.cached_tokens,
            event.completion_tokens,
            batch=batch,
        )
        return replace(
            event, cost_micros=cost.cost_micros, currency=cost.currency, price_id=cost.price_id
        )

    def settle(self, admissions: list[Admission], event: UsageEvent) -> None:
        """Replace the admissions' reservations with what ``event`` used (in the background)."""
        if admissions:
            tokens = event.prompt_tokens + event.completion_tokens
            task = asyncio.get_running_loop().create_task(
                self._settle(admissions, tokens, event.cost_micros)
            )
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)

    async def _settle(self, admissions: list[Admission], tokens: int, cost_micros: int) -> None:
        first, *rest = admissions
        await self.limiter.settle(first, tokens, cost_micros)
        for adm in rest:  # the request's other admissions are refunded whole
            await self.limiter.settle(adm, 0, 0)

    async def aclose(self) -> None:
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        await self.limiter.aclose()

    async def authenticate(self, plaintext: str | None) -> Principal:
        """The principal behind a bearer key.

        Raises:
            AuthenticationError: missing, malformed, unknown or revoked key.
        """
        if not plaintext:
            raise AuthenticationError(
                "You didn't provide an API key. Provide it in the Authorization header "
                "('Authorization: Bearer mg-...') or, for the Messages API, 'x-api-key'.",
                code="missing_api_key",
            )
        presented = keys.hash_key(plaintext)
        hit = self.auth_cache.get(presented)
        if hit is not None and hmac.compare_digest(presented, hit[0]):
            principal, expires_at = hit[1]
            if expires_at is not None and expires_at <= datetime.now(UTC):
                raise AuthenticationError("This API key has expired.", code="expired_api_key")
            return principal
        key_id = keys.parse_key_id(plaintext)
        generation = self.auth_cache.generation  # a change cleared meanwhile: not cached
        found: tuple[ApiKey, Workspace] | None = None
        if key_id is not None:
            async with self._sessions() as session:
                found = await repo.get_api_key_with_workspace(session, key_id)
        # Compare even when the id is unknown so both paths cost the same.
        stored = found[0].secret_hash if found is not None else "0" * 64
        if not keys.matches(plaintext, stored) or found is None:
            raise AuthenticationError("Incorrect API key provided.")
        row, ws = found
        _check_usable(row)
        principal, expires = _principal_of(row, ws)
        self.auth_cache.put(presented, row.secret_hash, (principal, expires), row.id, generation)
        return principal

    async def principal_of_key(self, key_id: str) -> Principal:
        """The principal of key ``key_id`` as it is now (a batch runs as the key that
        created it, for its scopes and budgets).

        Raises:
            AuthenticationError: the key is unknown, revoked or expired.
        """
        async with self._sessions() as session:
            found = await repo.get_api_key_with_workspace(session, key_id)
        if found is None:
            raise AuthenticationError("The API key of this batch no longer exists.")
        row, ws = found
        _check_usable(row)
        return _principal_of(row, ws)[0]

    async def principal_of_hash(self, key_id: str, key_hash: str) -> Principal:
        """The principal of key ``key_id`` whose stored hash is ``key_hash``, through the
        principal cache (a web-console session holds the key's id and reads its hash, never
        the plaintext): each page load re-checks the key as a model-API request does.

        Raises:
            AuthenticationError: the key is unknown, revoked, expired or was replaced.
        """
        hit = self.auth_cache.get(key_hash)
        if hit is not None and hmac.compare_digest(key_hash, hit[0]):
            principal, expires_at = hit[1]
            if expires_at is not None and expires_at <= datetime.now(UTC):
                raise AuthenticationError("This API key has expired.", code="expired_api_key")
            return principal
        generation = self.auth_cache.generation
        async with self._sessions() as session:
            found = await repo.get_api_key_with_workspace(session, key_id)
        if found is None or not hmac.compare_digest(found[0].secret_hash, key_hash):
            raise AuthenticationError("Incorrect API key provided.")
        row, ws = found
        _check_usable(row)
        value = _principal_of(row, ws)
        self.auth_cache.put(key_hash, row.secret_hash, value, row.id, generation)
        return value[0]

    async def refresh_principals(self) -> int:
        """Re-read the cached keys that are in use and about to expire, in one query, so
        their next requests need no database round trip (``tenancy.authcache``); keys revoked,
        expired or deleted meanwhile leave the cache. Returns how many were refreshed."""
        cache = self.auth_cache
        due = cache.due()
        if not due:
            return 0
        return await self._reread(due, cache.generation)

    async def reread_principals(self) -> int:
        """Keys or workspaces changed in another process: re-read every cached principal in
        one query instead of dropping them all (which would send each key's next request to
        the database, on every gateway at once). Keys revoked, expired or deleted leave the
        cache; when this returns no request is answered from an entry older than the change.
        Returns how many stayed."""
        generation, entries = self.auth_cache.reread()
        if not entries:
            return 0
        return await self._reread(entries, generation)

    async def _reread(self, entries: list[tuple[str, str]], generation: int) -> int:
        cache = self.auth_cache
        async with self._sessions() as session:
            found = await repo.get_api_keys_with_workspaces(session, {kid for _, kid in entries})
        now = datetime.now(UTC)
        refreshed = 0
        for key_hash, key_id in entries:
            pair = found.get(key_id)
            row = pair[0] if pair is not None else None
            if (
                pair is None
                or row is None
                or row.revoked_at is not None
                or (row.expires_at is not None and _aware(row.expires_at) <= now)
                or not hmac.compare_digest(row.secret_hash, key_hash)
            ):
                cache.drop(key_hash)
                continue
            cache.put(
                key_hash, row.secret_hash, _principal_of(*pair), key_id, generation, refresh=True
            )
            refreshed += 1
        return refreshed

    async def authenticate_admin(self, plaintext: str | None) -> Principal:
        """Like ``authenticate`` but requires the admin role.

        Raises:
            AuthenticationError: as ``authenticate``.
            PermissionDeniedError: a tenant key.
        """
        principal = await self.authenticate(plaintext)
        if not principal.is_admin:
            raise PermissionDeniedError("This endpoint needs an admin key.")
        return principal

    def record(self, event: UsageEvent) -> None:
        """Queue one usage record (never blocks the request)."""
        if self.usage is not None:
            self.usage.record(event)


__all__ = ["Principal", "TenancyService"]
