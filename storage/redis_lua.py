"""The Lua scripts of the Redis backend (see ``storage.redis`` for the key layout)."""

# Scripts are atomic, but Redis does not roll one back: every check comes before the first
# write, and no write can fail on types we control.
GIVE_BACK = """
local function give_back(t, k)  -- a coupon unit, once per key, and only if it was taken
  if redis.call('SISMEMBER', 'stock:take:' .. t, k) == 1
      and redis.call('SADD', 'stock:ret:' .. t, k) == 1 then
    redis.call('HINCRBY', 'stock', t, 1)
  end
end
-- A key holds a unit between its take and its return; a key whose unit went back (a refused
-- exchange retried) takes a new one, or none when none is left.
local function holds(t, k)
  return redis.call('SISMEMBER', 'stock:take:' .. t, k) == 1
    and redis.call('SISMEMBER', 'stock:ret:' .. t, k) == 0
end
local function take(t, k)
  if holds(t, k) then return 1 end
  if tonumber(redis.call('HGET', 'stock', t) or '0') <= 0 then return 0 end
  redis.call('HINCRBY', 'stock', t, -1)
  redis.call('SADD', 'stock:take:' .. t, k)
  redis.call('SREM', 'stock:ret:' .. t, k)
  return 1
end
"""

# Expecting version -1 makes it a pure read: the stored result for the key, or the state.
COMMIT = GIVE_BACK + """
local agg, idem, mled, mid = KEYS[1], KEYS[2], KEYS[3], ARGV[5]
if ARGV[6] == '1' then
  local r = redis.call('HGET', idem, ARGV[7])
  if r then return {1, r} end
end
local cur = redis.call('HMGET', agg, 'v', 'd', 'x')
if (cur[1] or '0') ~= ARGV[1] then return {2, cur[1], cur[2], cur[3]} end
-- the operations come as one JSON array of [op, a, b, c]: one argument to pack, not dozens
local ops = cjson.decode(ARGV[9])
-- preconditions, before the first write: claims free (or ours), stock there
for _, o in ipairs(ops) do
  if o[1] == 'C' then
    local owner = redis.call('HGET', 'uq:' .. o[2], o[3])
    if owner and owner ~= mid then return {3, o[2], o[3], owner} end
  elseif o[1] == 'T' then
    if not holds(o[2], o[3])
        and tonumber(redis.call('HGET', 'stock', o[2]) or '0') <= 0 then
      return {4, o[2]}
    end
  end
end
if ARGV[2] ~= '' then
  redis.call('HSET', agg, 'v', ARGV[2], 'd', ARGV[3], 'x', ARGV[4])
  if ARGV[1] == '0' then redis.call('ZADD', 'members', 0, mid) end
end
if ARGV[6] == '1' then redis.call('HSET', idem, ARGV[7], ARGV[8]) end
for _, o in ipairs(ops) do
  local op, a, b, c = o[1], o[2], o[3], o[4]
  if op == 'L' then
    local id = redis.call('RPUSH', 'ledger', a)
    redis.call('RPUSH', mled, id .. ':' .. a)
  elseif op == 'O' then
    if redis.call('HSETNX', 'outbox', a, c) == 1 then redis.call('SADD', 'outbox:' .. b, a) end
  elseif op == 'Z' then
    redis.call('ZADD', 'idx:' .. a, b, mid)
  elseif op == 'z' then
    redis.call('ZREM', 'idx:' .. a, mid)
  elseif op == 'S' then
    if redis.call('SADD', 'idx:' .. a .. ':' .. b, mid) == 1 then
      redis.call('HINCRBY', 'idxv:' .. a, b, 1)
    end
  elseif op == 's' then
    if redis.call('SREM', 'idx:' .. a .. ':' .. b, mid) == 1
        and redis.call('HINCRBY', 'idxv:' .. a, b, -1) <= 0 then
      redis.call('HDEL', 'idxv:' .. a, b)
    end
  elseif op == 'C' then
    redis.call('HSETNX', 'uq:' .. a, b, mid)
  elseif op == 'T' then
    take(a, b)
  else
    give_back(a, b)
  end
end
return {0}
"""

CLAIM = """
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
"""

RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""

STOCK_TAKE = GIVE_BACK + "return take(ARGV[1], ARGV[2])"

STOCK_RETURN = GIVE_BACK + "give_back(ARGV[1], ARGV[2]) return 0"

OUTBOX_CAS = """
if redis.call('HGET', 'outbox', ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', 'outbox', ARGV[1], ARGV[3])
redis.call('SMOVE', 'outbox:' .. ARGV[4], 'outbox:' .. ARGV[5], ARGV[1])
return 1
"""

KV_CAS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""

KV_CAD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""

INCR_WINDOW = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""
