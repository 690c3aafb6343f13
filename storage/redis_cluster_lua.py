"""Lua scripts of the Redis Cluster backend (see ``storage.redis_cluster`` for the layout).

Every script touches keys of one slot only: the member's ``{m:<id>}``, one shard ``{g<k>}``,
one stock template ``{st:<t>}``, or one declared key.
"""

# KEYS[1]: {m:<id>}:agg; the member's other keys (:idem, :ledger, :outbox, :sret) share its
# tag and slot and are derived here (one key to route: the client hashes one name, not five).
# ARGV: expect version, new version ('' = no member write), data, idx, has key, key, result,
# ops json ([op, a, b, c]: 'L' row json, 'O' row id + row json, 'R' template + key).
# Expecting -1 makes it a pure read.
# Returns {0, ledger rows "id:json"...} | {1, result} | {2, v, d, x}.
# A ledger id is the slot's server time in microseconds followed by the slot number and the
# row's index in the commit: one slot's scripts run one at a time on one server, so ids never
# repeat, and they follow commit order wherever the servers' clocks agree.
COMMIT = """
local agg = KEYS[1]
local tag = string.sub(agg, 1, -5)
local idem, mled, mob, sret = tag .. ':idem', tag .. ':ledger', tag .. ':outbox', tag .. ':sret'
if ARGV[5] == '1' then
  local r = redis.call('HGET', idem, ARGV[6])
  if r then return {1, r} end
end
local cur = redis.call('HMGET', agg, 'v', 'd', 'x')
if (cur[1] or '0') ~= ARGV[1] then return {2, cur[1], cur[2], cur[3]} end
if ARGV[2] ~= '' then
  redis.call('HSET', agg, 'v', ARGV[2], 'd', ARGV[3], 'x', ARGV[4])
end
if ARGV[5] == '1' then redis.call('HSET', idem, ARGV[6], ARGV[7]) end
local out = {0}
local t = redis.call('TIME')
local base = t[1] .. string.format('%06d', tonumber(t[2])) .. string.format('%05d', ARGV[9])
local n = 0
for _, o in ipairs(cjson.decode(ARGV[8])) do
  local op, a, b = o[1], o[2], o[3]
  if op == 'L' then
    local row = base .. string.format('%03d', n) .. ':' .. a
    n = n + 1
    redis.call('RPUSH', mled, row)
    out[#out + 1] = row
  elseif op == 'O' then
    redis.call('HSETNX', mob, a, b)
  else
    redis.call('HSET', sret, a .. '|' .. b, 1)
  end
end
return out
"""

STATUSES = ("pending", "sending", "sent", "failed", "unreachable", "skipped")

# KEYS[1]: any key of shard {g<k>} (routing); the script derives the shard's other keys from
# ARGV[1], the shard tag. ARGV: tag, member id, version, normalised index terms json (or ''),
# intent score ('' = none), ledger rows json, outbox json [[row id, n, status]...], and the
# terms that changed from the version before ({name: [old, new]}, or '').
# Applies the member's state only if its version is newer than the one applied (writers of one
# member may publish out of order), adds ledger rows and outbox ids (idempotent), and clears
# the member's intent when it is the one this writer set. When the shard holds the version
# just before, only the changed terms are applied; else the terms held (:x) are compared with
# the new ones name by name.
PUBLISH = """
local g, mid, ver = ARGV[1], ARGV[2], tonumber(ARGV[3])
local function apply(name, o, w)  -- one index of the member: from terms o to terms w
  if o.n and not w.n then redis.call('ZREM', g .. ':idx:' .. name, mid) end
  if w.n and w.n ~= o.n then redis.call('ZADD', g .. ':idx:' .. name, w.n, mid) end
  local keep, had = {}, {}
  for _, tg in ipairs(w.t or {}) do keep[tg] = true end
  for _, tg in ipairs(o.t or {}) do
    had[tg] = true
    if not keep[tg] and redis.call('SREM', g .. ':idx:' .. name .. ':' .. tg, mid) == 1
        and redis.call('HINCRBY', g .. ':idxv:' .. name, tg, -1) <= 0 then
      redis.call('HDEL', g .. ':idxv:' .. name, tg)
    end
  end
  for _, tg in ipairs(w.t or {}) do
    if not had[tg] and redis.call('SADD', g .. ':idx:' .. name .. ':' .. tg, mid) == 1 then
      redis.call('HINCRBY', g .. ':idxv:' .. name, tg, 1)
    end
  end
end
local applied = tonumber(redis.call('HGET', g .. ':ver', mid) or '0')
if ARGV[4] ~= '' and ver > applied then
  redis.call('HSET', g .. ':ver', mid, ver)
  redis.call('ZADD', g .. ':members', 0, mid)
  if (ARGV[8] or '') ~= '' and applied == ver - 1 then
    for name, p in pairs(cjson.decode(ARGV[8])) do apply(name, p[1], p[2]) end
  else
    local old = cjson.decode(redis.call('HGET', g .. ':x', mid) or '{}')
    local new = cjson.decode(ARGV[4])
    for name, o in pairs(old) do apply(name, o, new[name] or {}) end
    for name, w in pairs(new) do
      if not old[name] then apply(name, {}, w) end
    end
  end
  redis.call('HSET', g .. ':x', mid, ARGV[4])
end
for _, row in ipairs(cjson.decode(ARGV[6])) do
  redis.call('ZADD', g .. ':ledger', 0, row)
end
for _, o in ipairs(cjson.decode(ARGV[7])) do
  local rid, n, st = o[1], tonumber(o[2]), o[3]
  local seen = tonumber(redis.call('HGET', g .. ':obn', rid) or '-1')
  if n > seen then
    for _, s in ipairs({'pending', 'sending', 'sent', 'failed', 'unreachable', 'skipped'}) do
      if s ~= st then redis.call('SREM', g .. ':outbox:' .. s, rid) end
    end
    redis.call('SADD', g .. ':outbox:' .. st, rid)
    redis.call('SADD', g .. ':outbox', rid)
    redis.call('HSET', g .. ':obn', rid, n)
  end
end
if ARGV[5] ~= '' and redis.call('ZSCORE', g .. ':intent', mid) == ARGV[5] then
  redis.call('ZREM', g .. ':intent', mid)
end
return 0
"""

# KEYS[1]: shard intent zset. ARGV: member id. Raises the member's intent to a
# score no other writer holds and returns {score, 1 if another intent was there}: the writer
# clears only its own, and republishes the whole member when it took over another's (a writer
# that crashed before publishing, or one still running).
INTENT = """
local cur = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
local t = redis.call('TIME')  -- the servers' clock, the one ledger ids are drawn from
local s = math.max(cur + 1, tonumber(t[1]) * 1000000 + tonumber(t[2]))
redis.call('ZADD', KEYS[1], s, ARGV[1])
return {string.format('%d', s), cur > 0 and 1 or 0}
"""

# KEYS[1]: shard intent zset. ARGV: member id, score read, settled before. A repairer drops an
# intent once it has published the member, if nobody renewed it and it is old enough that no
# live writer can still be between its commit and its publish.
SETTLE = """
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and s == ARGV[2] and tonumber(s) <= tonumber(ARGV[3]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""

# KEYS: {m:<id>}:outbox. ARGV: row id, raw row expected, new raw row.
OUTBOX_CAS = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

# KEYS: {st:<t>}:n, {st:<t>}:take, {st:<t>}:ret. A key holds a unit between its take and its
# return; a key whose unit went back takes a new one. Returns 2 newly taken, 1 held, 0 none.
STOCK_TAKE = """
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1
    and redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 then return 1 end
if tonumber(redis.call('GET', KEYS[1]) or '0') <= 0 then return 0 end
redis.call('DECR', KEYS[1])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
return 2
"""

STOCK_RETURN = """
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 and redis.call('SADD', KEYS[3], ARGV[1]) == 1
then
  redis.call('INCR', KEYS[1])
end
return 0
"""

# KEYS[1]: uq:<kind>. ARGV: value, member id. Returns {1 if newly bound, owner}.
CLAIM_NEW = """
local n = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return {n, redis.call('HGET', KEYS[1], ARGV[1])}
"""
