"""The Lua scripts of :mod:`api.security.quotas_redis`: each runs atomically in Redis.

Reserve and settle take the same keys::

    KEYS[1..n]                  the scopes' counters
    KEYS[n+1 .. n+n*m]          their alarm markers (scope-major)
    KEYS[n+n*m+1]               the lease set (every lease that has held reservations)
    KEYS[n+n*m+2]               this process's lease key (alive while it has a TTL left)
    KEYS[n+n*m+3]               this process's open reservations (hash: id -> JSON)

    ARGV: n, m, amount, limit_1..n, expire_at_1..n, level_1..m, then
          lease id, lease TTL (ms), reservation id, reserved tokens (settle)

``amount`` is the tokens asked for (reserve) or really used (settle). An open reservation is
``{"t": tokens, "k": [counter keys]}`` under its id. Settling removes it; if it is no longer
there, a reclaimer already gave its tokens back, so the settle adds what was used instead of
replacing the reservation by it -- never subtracting twice.

The reclaimer takes the lease set and the lease keys' common prefix; for every lease whose
key has expired it subtracts each open reservation from the counters that still exist (a
counter of a period that has ended has expired with it, and the new period's counter is a
different key), then forgets the lease. Counters never go below zero.

The scripts read keys they compute (the reclaimer's counters): Redis runs that on one
server, not on a Redis Cluster -- as the reserve already does, with user and tenant
counters in one atomic step.
"""

from __future__ import annotations

from typing import Final

__all__ = ["RECLAIM", "RESERVE", "SETTLE"]

_COMMON: Final = """
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local function limit(i) return tonumber(ARGV[3 + i]) end
local function expire_at(i) return ARGV[3 + n + i] end
local lease_set = KEYS[n + n * m + 1]
local lease_key = KEYS[n + n * m + 2]
local open_key = KEYS[n + n * m + 3]
local lease_id = ARGV[3 + 2 * n + m + 1]
local lease_ttl_ms = ARGV[3 + 2 * n + m + 2]
local reservation_id = ARGV[3 + 2 * n + m + 3]
local function alarms(i, demand, fired)
  for j = 1, m do
    local level = tonumber(ARGV[3 + 2 * n + j])
    if demand * 100 >= level * limit(i) then
      if redis.call('SET', KEYS[n + (i - 1) * m + j], '1', 'NX', 'EXAT', expire_at(i)) then
        fired[#fired + 1] = i
        fired[#fired + 1] = level
      end
    end
  end
end
"""

RESERVE: Final = (
    _COMMON
    + """
local used, refused, fired = {}, {}, {}
for i = 1, n do
  used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used[i] + amount > limit(i) then refused[#refused + 1] = i end
end
for i = 1, n do
  if #refused == 0 then
    redis.call('INCRBY', KEYS[i], amount)
    redis.call('EXPIREAT', KEYS[i], expire_at(i))
    alarms(i, used[i] + amount, fired)
  elseif used[i] + amount > limit(i) then
    alarms(i, used[i] + amount, fired)
  end
end
if #refused == 0 and n > 0 then
  local counters, last = {}, 0
  for i = 1, n do
    counters[i] = KEYS[i]
    last = math.max(last, tonumber(expire_at(i)))
  end
  redis.call('HSET', open_key, reservation_id, cjson.encode({t = amount, k = counters}))
  -- Kept until the last of its periods ends: after that, nothing is left to give back.
  local ttl = redis.call('TTL', open_key)
  local now = tonumber(redis.call('TIME')[1])
  if ttl < 0 or now + ttl < last then redis.call('EXPIREAT', open_key, last) end
  redis.call('SADD', lease_set, lease_id)
  redis.call('SET', lease_key, '1', 'PX', lease_ttl_ms)
end
return {#refused == 0 and 1 or 0, used, fired}
"""
)

SETTLE: Final = (
    _COMMON
    + """
local reserved = tonumber(ARGV[3 + 2 * n + m + 4])
local held = 0
if redis.call('HDEL', open_key, reservation_id) == 1 then held = reserved end
local delta = amount - held
local fired = {}
if delta ~= 0 then
  for i = 1, n do
    if redis.call('EXISTS', KEYS[i]) == 1 then
      local now_used = redis.call('INCRBY', KEYS[i], delta)
      if now_used < 0 then
        redis.call('SET', KEYS[i], '0', 'KEEPTTL')
        now_used = 0
      end
      if delta > 0 then alarms(i, now_used, fired) end
    end
  end
end
return fired
"""
)

# KEYS[1]: the lease set. ARGV[1]: the prefix of lease keys (lease id appended).
# Returns {reservations reclaimed, tokens reclaimed, leases forgotten}.
RECLAIM: Final = """
local reservations, tokens, forgotten = 0, 0, 0
for _, lease in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local lease_key = ARGV[1] .. lease
  if redis.call('EXISTS', lease_key) == 0 then
    local open_key = lease_key .. ':open'
    local entries = redis.call('HGETALL', open_key)
    for i = 2, #entries, 2 do
      local entry = cjson.decode(entries[i])
      local given_back = false
      for _, counter in ipairs(entry.k) do
        if redis.call('EXISTS', counter) == 1 then
          if redis.call('DECRBY', counter, entry.t) < 0 then
            redis.call('SET', counter, '0', 'KEEPTTL')
          end
          given_back = true
        end
      end
      if given_back then
        reservations = reservations + 1
        tokens = tokens + entry.t
      end
    end
    redis.call('DEL', open_key)
    redis.call('SREM', KEYS[1], lease)
    forgotten = forgotten + 1
  end
end
return {reservations, tokens, forgotten}
"""
