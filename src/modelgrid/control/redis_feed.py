"""Redis pub/sub as the change feed's wake-up where PostgreSQL's ``LISTEN`` is not in use.

On SQLite (no ``NOTIFY``), or on PostgreSQL behind a pooler that drops ``LISTEN``
(``control.listen = false``), a gateway would learn of another process's change only at its
next poll of the change counters (``control.poll_interval_s``). When the gateways share a
Redis (``ratelimit.backend = "redis"``), each committed change is also published there:

- ``RedisAnnouncer`` is the sessions' ``announce`` callback (``storage.db.sessionmaker``):
  after a transaction that changed the control plane commits, it publishes each changed topic
  on ``CHANNEL`` (in a worker thread: the event loop never waits for Redis);
- ``RedisWakeups`` subscribes to ``CHANNEL`` and wakes the follower at once, which reads the
  counters in the database as it does on a poll.

A message only wakes a follower: what changed is always read from the database, so a lost
message, a Redis that is down or a message from another deployment sharing the Redis costs
nothing but a wait for the poll or one extra read of three rows. The poll stays the safety
net.

On a Redis Cluster (a ``redis+cluster://`` URL) both connect to the URL's node as a plain
Redis: a cluster delivers a ``PUBLISH`` to the subscribers of every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis
import redis.asyncio

from modelgrid.tenancy.ratelimit_redis import cluster_node_url

log = logging.getLogger("modelgrid.control")

CHANNEL = "modelgrid:control"
RECONNECT_S = 1.0
TIMEOUT_S = 0.5  # to connect to Redis, and for a publish


class RedisAnnouncer:
    """Publishes committed control-plane changes on ``CHANNEL``.

    Args:
        url: The Redis URL (``redis://host:port/db``; the channel is server-wide).
        in_thread: Publish in the running loop's default executor (a server: its loop never
            waits for Redis); ``False``: at once, blocking (a one-shot command).
    """

    def __init__(self, url: str, *, in_thread: bool = True) -> None:
        self._in_thread = in_thread
        self._client = redis.Redis.from_url(
            cluster_node_url(url) or url,
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
        )
        self.published = 0
        self._failing = False
        self._closed = False

    def __call__(self, topics: tuple[str, ...]) -> None:
        """Publish ``topics`` (a commit's changed topics): in the running loop's default
        executor (``in_thread``), else at once. Failures are logged, never raised."""
        try:
            loop = asyncio.get_running_loop() if self._in_thread else None
        except RuntimeError:
            loop = None
        if loop is None:
            self.publish(topics)
        else:
            loop.run_in_executor(None, self.publish, topics)

    def publish(self, topics: tuple[str, ...]) -> None:
        """Publish each of ``topics`` now (blocking, at most ``TIMEOUT_S`` a call); nothing
        once closed (a publish still queued at shutdown)."""
        if self._closed:
            return
        try:
            for topic in topics:
                self._client.publish(CHANNEL, topic)
                self.published += 1
        except (redis.RedisError, OSError) as exc:
            if not self._failing:  # once per outage; the poll carries the change meanwhile
                log.warning("cannot publish a control-plane change on Redis: %s", exc)
            self._failing = True
            return
        self._failing = False

    def close(self) -> None:
        """Close the connection; later publishes are dropped."""
        self._closed = True
        self._client.close()


class RedisWakeups:
    """Calls ``on_message(topic)`` for each message on ``CHANNEL`` (and with ``""`` each time
    the subscription is (re)made: messages may have been missed while it was down).

    Args:
        url: The Redis URL.
        on_message: Called on the event loop; must not block.
    """

    def __init__(self, url: str, on_message: Callable[[str], None]) -> None:
        self._url = cluster_node_url(url) or url
        self._on_message = on_message
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        self.messages = 0

    def start(self) -> None:
        """Subscribe in the background (on the running loop), reconnecting every
        ``RECONNECT_S`` while Redis cannot be reached."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="control-redis-wakeups"
            )

    async def _run(self) -> None:
        warned = False
        while True:
            client = redis.asyncio.Redis.from_url(self._url, socket_connect_timeout=TIMEOUT_S)
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self.subscribed.set()
                    warned = False
                    self._on_message("")
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self.messages += 1
                            data = message["data"]
                            self._on_message(data.decode() if isinstance(data, bytes) else data)
            except (redis.RedisError, OSError) as exc:
                if not warned:
                    log.warning("Redis wake-ups lost (polling meanwhile): %s", exc)
                    warned = True
            finally:
                self.subscribed.clear()
                await client.aclose()
            await asyncio.sleep(RECONNECT_S)

    async def aclose(self) -> None:
        """Unsubscribe and stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


__all__ = ["CHANNEL", "RedisAnnouncer", "RedisWakeups"]
