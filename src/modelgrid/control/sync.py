"""``ChangeFollower``: how a gateway learns what other gateways (and the CLI) changed.

Every control-plane change bumps a counter in the database in its own transaction
(``storage.control_state``: ``principals``, ``prices``, ``topology``). Each gateway runs one
follower: it reads the counters every ``poll_interval_s`` and, on PostgreSQL, also as soon as
a ``NOTIFY`` arrives on its ``LISTEN`` connection (the poll is then only the safety net: a
lost notification or a dropped connection costs at most one interval; a dropped connection
is reopened). For each counter that moved it runs that topic's handler — drop the cached
principals, reload the price book, reload the stored topology — and remembers the version
only once the handler succeeded, so a failed one runs again next round.

Where ``LISTEN`` is not in use (SQLite, ``control.listen = false``) and the gateways share a
Redis, a message on Redis wakes the follower instead (``control.redis_feed``;
``redis_wakeup_url`` says when).

Stopping (``stop``) lets the round in progress finish: a round is never cut in the middle of
a database transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from modelgrid.config import ControlSettings, Settings
from modelgrid.control.redis_feed import RedisWakeups
from modelgrid.storage import control_state
from modelgrid.storage.control_state import Listener
from modelgrid.tenancy.lookup import Sessions
from modelgrid.tenancy.service import TenancyService

log = logging.getLogger("modelgrid.control")

Handler = Callable[[], Awaitable[object]]
RELISTEN_S = 5.0


class ChangeFollower:
    """Applies the changes other processes made to the shared control plane.

    Args:
        sessions: The shared database.
        handlers: What to run when a topic's counter moves (topics without one are ignored).
        url: The database URL (a ``LISTEN`` connection is opened for PostgreSQL ones);
            ``None``: poll only.
        redis_url: A Redis whose ``control.redis_feed`` messages wake the follower;
            ``None``: none.
        poll_interval_s: How often the counters are read without a notification.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        sessions: Sessions,
        handlers: Mapping[str, Handler],
        *,
        url: str | None = None,
        redis_url: str | None = None,
        poll_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._handlers = dict(handlers)
        self._url = url
        self.poll_interval_s = poll_interval_s
        self._clock = clock
        self._seen: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._listener: Listener | None = None
        self._listen_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._redis_url = redis_url
        self.wakeups: RedisWakeups | None = None
        self.rounds = 0
        self.listens = 0  # LISTEN connections opened

    @classmethod
    def of(
        cls,
        settings: ControlSettings,
        sessions: Sessions,
        url: str,
        *,
        redis_url: str | None = None,
    ) -> ChangeFollower:
        """A gateway's follower: ``LISTEN`` on ``url`` if ``settings.listen``; woken by Redis
        messages if ``redis_url`` (``redis_wakeup_url``)."""
        return cls(
            sessions,
            {},
            url=url if settings.listen else None,
            redis_url=redis_url,
            poll_interval_s=settings.poll_interval_s,
        )

    def on(self, topic: str, handler: Handler) -> None:
        """Run ``handler`` when ``topic``'s counter moves."""
        self._handlers[topic] = handler

    @property
    def listening(self) -> bool:
        """Whether a ``LISTEN`` connection is open now."""
        return self._listener is not None and self._listener.alive

    async def open(self) -> None:
        """Take the counters as they are now as the baseline (call it before loading the state
        the handlers refresh, so a change made in between is applied, not missed), and open
        the ``LISTEN`` connection."""
        async with self._sessions() as session:
            self._seen = await control_state.versions(session)
        await self._relisten()
        if self._redis_url is not None and self.wakeups is None:
            self.wakeups = RedisWakeups(self._redis_url, self._notified)
            self.wakeups.start()

    async def _relisten(self) -> None:
        if self._url is None or self.listening:
            return
        self._listen_at = self._clock()
        if self._listener is not None:
            await self._listener.aclose()
            self._listener = None
            log.warning("the LISTEN connection closed; reopening it")
        self._listener = await Listener.open(self._url, self._notified, self._wake.set)
        self.listens += self._listener is not None
        self._wake.set()  # read the counters: notifications may have been missed meanwhile

    def _notified(self, topic: str) -> None:
        self._wake.set()

    async def follow_once(self) -> list[str]:
        """Read the counters and run the handlers of those that moved.

        Returns:
            The topics applied.
        """
        async with self._sessions() as session:
            now = await control_state.versions(session)
        applied = []
        for topic, version in now.items():
            if version == self._seen.get(topic) or topic not in self._handlers:
                continue
            try:
                await self._handlers[topic]()
            except Exception:
                log.exception("applying a %s change failed; trying again next round", topic)
                continue
            self._seen[topic] = version
            applied.append(topic)
        self.rounds += 1
        return applied

    def start(self) -> None:
        """Start following (on the running loop), after ``open`` and ``on``."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="control-changes")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            timeout = self.poll_interval_s
            lost = self._url is not None and not self.listening
            if lost:  # wake when the LISTEN connection may be reopened
                timeout = min(timeout, max(0.0, self._listen_at + RELISTEN_S - self._clock()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                if lost and self._clock() - self._listen_at >= RELISTEN_S:
                    await self._relisten()
                await self.follow_once()
            except Exception:
                log.exception("reading the control-plane counters failed; polling on")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop following: the round in progress ends first (cancelled only if it is still
        running after ``timeout_s``), then the ``LISTEN`` connection is closed."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                log.error("following changes did not finish its round in %g s", timeout_s)
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._listener is not None:
            await self._listener.aclose()
            self._listener = None
        if self.wakeups is not None:
            await self.wakeups.aclose()
            self.wakeups = None


def redis_wakeup_url(settings: Settings) -> str | None:
    """The Redis that carries change wake-ups (``control.redis_feed``), or ``None``: the
    limiter's Redis (``ratelimit.backend = "redis"``), with ``control.redis_wakeup`` on, where
    no ``LISTEN`` wakes the gateways (not PostgreSQL, or ``control.listen`` off). Publishers
    (gateways, the CLI) and followers decide alike from the same settings."""
    c = settings.control
    if settings.ratelimit.backend != "redis" or not c.redis_wakeup:
        return None
    if c.listen and settings.database_url.startswith("postgresql"):
        return None
    return settings.ratelimit.redis_url.get_secret_value()


class Reloadable(Protocol):
    async def reload_if_changed(self) -> bool: ...


def follow_gateway(
    changes: ChangeFollower, tenancy: TenancyService, topology: Reloadable | None
) -> None:
    """What a gateway does when another process changed the control plane: keys or
    workspaces (scopes, limits, revocations) re-read its cached principals (one query;
    revoked keys leave the cache); prices reload its
    price book; the topology (only when it lives in the database: ``topology``) is reloaded
    and made live."""

    changes.on(control_state.PRINCIPALS, tenancy.reread_principals)
    changes.on(control_state.PRICES, tenancy.reload_prices)
    if topology is not None:
        changes.on(control_state.TOPOLOGY, topology.reload_if_changed)


__all__ = ["ChangeFollower", "follow_gateway", "redis_wakeup_url"]
