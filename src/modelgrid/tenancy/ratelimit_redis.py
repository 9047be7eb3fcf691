"""The Redis rate-limit backend: the in-process algorithm as atomic server-side Lua scripts.

One ``EVALSHA`` checks every level and consumes from all of them or none, using Redis's
own clock (``TIME``), so any number of gateway processes share the limits exactly; a second
script settles (token reconciliation, concurrency release, monthly spend). Keys, per scope,
under ``mg:rl:{<shard>}`` followed by ``:<scope>`` when the scope is not its own shard (a
key's counters live in its workspace's shard: ``mg:rl:{ws:ws_1}:key:0123…:rpm``):

- ``…:rpm`` / ``:tpm``: hash ``{l: level, t: seconds}``, expiring after 2 min idle;
- ``…:inflight``: sorted set of request ids by start time (entries older than
  ``INFLIGHT_TTL_S`` are dropped, so a crashed gateway can't hold slots forever);
- ``…:spend:{YYYY-MM}`` / ``:tokens:{YYYY-MM}``: integers, seeded from the ledger
  with ``SET NX`` the first time a process needs them, expiring after 40 days;
- ``…:reserved:{YYYY-MM}``: hash request id → ``micros:tokens:start``, the
  worst cases of the requests running under a budget (``ratelimit``: budgets hold under
  concurrency); entries older than ``INFLIGHT_TTL_S`` are dropped (a crashed gateway's).

The ``{…}`` is a Redis Cluster hash tag: every key of one request's scripts (the workspace
level and the key level) hashes to the same slot, so the limiter works on a Redis Cluster as
on a single Redis (a script's keys must share a slot there). A key's counters moved under its
workspace's tag in #16: on upgrade its rate windows start full and its month counters are
seeded again from the ledger.

``RedisLimiter.from_url`` connects to one Redis (``redis://`` or ``rediss://``), or to a Redis
Cluster through ``redis.asyncio.cluster.RedisCluster`` when the URL's scheme is
``redis+cluster://`` (``rediss+cluster://`` with TLS): any one node's address; the client
discovers the others and sends each script to the node that holds its slot.
"""

from __future__ import annotations

from typing import Any

from modelgrid.tenancy.limits import ScopeLimits
from modelgrid.tenancy.ratelimit import (
    Admission,
    MonthSeed,
    Window,
    denial,
    month_key,
    refuse_zero_limits,
    seconds_to_month_end,
    tighter,
    window_headers,
)

INFLIGHT_TTL_S = 600
MONTH_TTL_S = 40 * 86400
_PER_SCOPE_KEYS = 6
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def cluster_node_url(url: str) -> str | None:
    """The plain ``redis://`` URL of a ``redis+cluster://`` URL's node (``None``: not a
    cluster URL)."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower())
    return f"{plain}{sep}{rest}" if sep and plain else None


# KEYS per scope: rpm, tpm, inflight, spend, tokens, reserved. ARGV: n, tokens, request_id,
# reserve_micros, then per scope: rpm, tpm, concurrency, budget_micros, token_budget (-1 = no
# limit).
# Returns {1, per scope: rpm_level, tpm_level} or {0, scope_index, kind, retry_s, level}.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local n = tonumber(ARGV[1])
local need = tonumber(ARGV[2])
local rid = ARGV[3]
local reserve = tonumber(ARGV[4])
local function level(key, cap)
  local v = redis.call('HMGET', key, 'l', 't')
  if not v[1] then return cap end
  return math.min(cap, tonumber(v[1]) + (now - tonumber(v[2])) * cap / 60)
end
local levels = {}
for i = 1, n do
  local k = (i - 1) * 6
  local a = 4 + (i - 1) * 5
  local rpm, tpm, conc = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local budget, tokbudget = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local rl, tl = -1, -1
  if rpm >= 0 then
    rl = level(KEYS[k + 1], rpm)
    if rl < 1 then return {0, i, 'rpm', tostring((1 - rl) * 60 / rpm), tostring(rl)} end
  end
  if tpm >= 0 then
    tl = level(KEYS[k + 2], tpm)
    local want = math.min(need, tpm)
    if tl < want then return {0, i, 'tpm', tostring((want - tl) * 60 / tpm), tostring(tl)} end
  end
  if conc >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 3], '-inf', now - INFLIGHT_TTL_S)
    if redis.call('ZCARD', KEYS[k + 3]) >= conc then return {0, i, 'concurrency', '1', '0'} end
  end
  local held_m, held_t = 0, 0
  if budget >= 0 or tokbudget >= 0 then
    local held = redis.call('HGETALL', KEYS[k + 6])
    for j = 1, #held, 2 do
      local m, tk, at = string.match(held[j + 1], '^(%d+):(%d+):(.+)$')
      if tonumber(at) < now - INFLIGHT_TTL_S then
        redis.call('HDEL', KEYS[k + 6], held[j])
      else
        held_m, held_t = held_m + tonumber(m), held_t + tonumber(tk)
      end
    end
  end
  if budget >= 0 and tonumber(redis.call('GET', KEYS[k + 4]) or '0') + held_m >= budget then
    return {0, i, 'budget', '0', '0'}
  end
  if tokbudget >= 0 and tonumber(redis.call('GET', KEYS[k + 5]) or '0') + held_t >= tokbudget then
    return {0, i, 'token_budget', '0', '0'}
  end
  levels[i] = {rl, tl}
end
local out = {1}
for i = 1, n do
  local k = (i - 1) * 6
  local a = 4 + (i - 1) * 5
  local rl, tl = levels[i][1], levels[i][2]
  if rl >= 0 then
    rl = rl - 1
    redis.call('HSET', KEYS[k + 1], 'l', tostring(rl), 't', tostring(now))
    redis.call('EXPIRE', KEYS[k + 1], 120)
  end
  if tl >= 0 then
    tl = tl - need
    redis.call('HSET', KEYS[k + 2], 'l', tostring(tl), 't', tostring(now))
    redis.call('EXPIRE', KEYS[k + 2], 120)
  end
  if tonumber(ARGV[a + 3]) >= 0 then
    redis.call('ZADD', KEYS[k + 3], now, rid)
    redis.call('EXPIRE', KEYS[k + 3], INFLIGHT_TTL_S)
  end
  if tonumber(ARGV[a + 4]) >= 0 or tonumber(ARGV[a + 5]) >= 0 then
    redis.call('HSET', KEYS[k + 6], rid, string.format('%d:%d:%.6f', reserve, need, now))
    redis.call('EXPIRE', KEYS[k + 6], MONTH_TTL_S)
  end
  table.insert(out, tostring(rl))
  table.insert(out, tostring(tl))
end
return out
""".replace("INFLIGHT_TTL_S", str(INFLIGHT_TTL_S)).replace("MONTH_TTL_S", str(MONTH_TTL_S))

# KEYS per scope as above. ARGV: n, refund (estimate - actual), request_id, cost, tokens, then
# per scope: tpm, has_month (0/1).
SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local n = tonumber(ARGV[1])
local refund = tonumber(ARGV[2])
local rid = ARGV[3]
local cost, toks = tonumber(ARGV[4]), tonumber(ARGV[5])
for i = 1, n do
  local k = (i - 1) * 6
  local tpm = tonumber(ARGV[5 + (i - 1) * 2 + 1])
  local has_month = tonumber(ARGV[5 + (i - 1) * 2 + 2])
  if tpm >= 0 then
    local v = redis.call('HMGET', KEYS[k + 2], 'l', 't')
    local l = tpm
    if v[1] then l = math.min(tpm, tonumber(v[1]) + (now - tonumber(v[2])) * tpm / 60) end
    l = math.min(tpm, l + refund)
    redis.call('HSET', KEYS[k + 2], 'l', tostring(l), 't', tostring(now))
    redis.call('EXPIRE', KEYS[k + 2], 120)
  end
  redis.call('ZREM', KEYS[k + 3], rid)
  if has_month == 1 then
    redis.call('HDEL', KEYS[k + 6], rid)
    redis.call('INCRBY', KEYS[k + 4], cost)
    redis.call('EXPIRE', KEYS[k + 4], MONTH_TTL_S)
    redis.call('INCRBY', KEYS[k + 5], toks)
    redis.call('EXPIRE', KEYS[k + 5], MONTH_TTL_S)
  end
end
return 1
""".replace("MONTH_TTL_S", str(MONTH_TTL_S))


def _keys(lim: ScopeLimits, month: str) -> list[str]:
    """The scope's keys, in its shard's hash tag."""
    base = f"mg:rl:{{{lim.shard}}}"
    if lim.shard != lim.scope:
        base += f":{lim.scope}"
    return [
        f"{base}:rpm",
        f"{base}:tpm",
        f"{base}:inflight",
        f"{base}:spend:{month}",
        f"{base}:tokens:{month}",
        f"{base}:reserved:{month}",
    ]


def _n(v: int | None) -> int:
    return -1 if v is None else v


class RedisLimiter:
    """Shared limits over Redis (``redis.asyncio.Redis``, or ``RedisCluster``)."""

    def __init__(self, client: Any, seed: MonthSeed | None = None) -> None:
        self._redis = client
        self._seed = seed
        self._acquire = client.register_script(ACQUIRE)
        self._settle = client.register_script(SETTLE)

    @classmethod
    def from_url(cls, url: str, seed: MonthSeed | None = None) -> RedisLimiter:
        """A limiter over the Redis at ``url``: ``redis://host:port/db`` (one server) or
        ``redis+cluster://host:port`` (a cluster, reached through any of its nodes; a cluster
        has database 0 only). Nothing is connected until the first call."""
        import redis.asyncio as redis
        from redis.asyncio.cluster import RedisCluster

        node = cluster_node_url(url)
        if node is not None:
            return cls(RedisCluster.from_url(node), seed)
        return cls(redis.Redis.from_url(url), seed)

    async def _ensure_month(self, lim: ScopeLimits, month: str) -> None:
        keys = _keys(lim, month)
        if await self._redis.exists(keys[3]) and await self._redis.exists(keys[4]):
            return
        micros, toks = await self._seed(lim.scope, month) if self._seed else (0, 0)
        await self._redis.set(keys[3], micros, nx=True, ex=MONTH_TTL_S)
        await self._redis.set(keys[4], toks, nx=True, ex=MONTH_TTL_S)

    async def acquire(
        self,
        request_id: str,
        limits: tuple[ScopeLimits, ...],
        tokens: int,
        reserve_micros: int = 0,
    ) -> Admission:
        refuse_zero_limits(limits)
        month = month_key()
        keys: list[str] = []
        args: list[Any] = [len(limits), tokens, request_id, max(0, reserve_micros)]
        for lim in limits:
            if lim.monthly_budget_micros is not None or lim.monthly_token_budget is not None:
                await self._ensure_month(lim, month)
            keys += _keys(lim, month)
            args += [
                _n(lim.rpm),
                _n(lim.tpm),
                _n(lim.concurrency),
                _n(lim.monthly_budget_micros),
                _n(lim.monthly_token_budget),
            ]
        res = await self._acquire(keys=keys, args=args)
        if int(res[0]) == 0:
            lim = limits[int(res[1]) - 1]
            kind = res[2].decode() if isinstance(res[2], bytes) else str(res[2])
            retry = float(res[3])
            level = float(res[4])
            headers: dict[str, str] = {}
            if kind == "rpm" and lim.rpm:
                headers = window_headers(
                    Window(lim.rpm, level, (lim.rpm - level) * 60 / lim.rpm), None
                )
            elif kind == "tpm" and lim.tpm:
                headers = window_headers(
                    None, Window(lim.tpm, level, (lim.tpm - level) * 60 / lim.tpm)
                )
            limit = {
                "rpm": lim.rpm,
                "tpm": lim.tpm,
                "concurrency": lim.concurrency,
                "budget": lim.monthly_budget_micros,
                "token_budget": lim.monthly_token_budget,
            }[kind]
            if kind in ("budget", "token_budget"):
                retry = seconds_to_month_end()
            raise denial(kind, lim.scope, int(limit or 0), retry, headers)
        adm = Admission(request_id, limits, tokens, month, max(0, reserve_micros))
        for i, lim in enumerate(limits):
            rl, tl = float(res[1 + 2 * i]), float(res[2 + 2 * i])
            if lim.rpm is not None:
                adm.requests = tighter(
                    adm.requests, Window(lim.rpm, rl, (lim.rpm - rl) * 60 / lim.rpm)
                )
            if lim.tpm is not None:
                adm.tokens = tighter(adm.tokens, Window(lim.tpm, tl, (lim.tpm - tl) * 60 / lim.tpm))
        return adm

    async def settle(self, admission: Admission, actual_tokens: int, cost_micros: int) -> None:
        if admission.settled:
            return
        admission.settled = True
        keys: list[str] = []
        args: list[Any] = [
            len(admission.limits),
            admission.estimate_tokens - actual_tokens,
            admission.request_id,
            cost_micros,
            actual_tokens,
        ]
        for lim in admission.limits:
            keys += _keys(lim, admission.month)
            has_month = (
                lim.monthly_budget_micros is not None or lim.monthly_token_budget is not None
            )
            args += [_n(lim.tpm), int(has_month)]
        await self._settle(keys=keys, args=args)

    async def aclose(self) -> None:
        await self._redis.aclose()


__all__ = ["RedisLimiter", "cluster_node_url"]
