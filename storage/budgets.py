"""Campaign points budgets: one counter per campaign shared by all members, taken in keyed
grants, for every backend (SQLite, PostgreSQL, Redis and Redis Cluster).

A grant is taken for an idempotency key (an order) before the member's step and used by it:

- ``budget_take(name, key, want, total, token)`` grants ``min(want, total - used)`` (never
  below 0) the first time ``key`` asks, and the same grant to every later ask under ``key``
  (a resent or retried order consumes the budget once); ``token`` names the attempt.
- ``budget_release(name, key, token)``: the attempt ``token`` did not commit (its step was
  refused). The grant goes back to the budget only when no other attempt holds it: an
  attempt that committed, or that crashed before it could tell, never releases, so the
  counter can fall short of what members got only by grants nobody used, never exceed it.
- ``budget_settle(name, key, amount)``: the order under ``key`` committed using only
  ``amount`` of its grant (its tier fell meanwhile, or its campaign changed): the grant
  shrinks to ``amount`` and the rest goes back. Lowering to the same amount again changes
  nothing, so resends settle once; the grant stays (smaller) with ``key``.
- ``budget_used(name)``: points granted so far.

Each operation is one atomic step of its backend (a transaction, a Lua script on one key).
"""

from __future__ import annotations

import sqlite3
from typing import Any

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS budget (name TEXT PRIMARY KEY, used INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS budget_grant (name TEXT NOT NULL, key TEXT NOT NULL,
    amount INTEGER NOT NULL, tokens TEXT NOT NULL, PRIMARY KEY (name, key)) WITHOUT ROWID;
"""

POSTGRES_SCHEMA = """
CREATE TABLE budget (name text PRIMARY KEY, used bigint NOT NULL);
CREATE TABLE budget_grant (name text NOT NULL, key text NOT NULL, amount bigint NOT NULL,
    tokens text NOT NULL, PRIMARY KEY (name, key));
"""


def _with(tokens: str, token: str) -> str:
    return tokens if token in tokens.split(",") else f"{tokens}{token},"


def _without(tokens: str, token: str) -> str:
    return "".join(f"{t}," for t in tokens.split(",") if t and t != token)


class SQLiteBudgets:
    """For :class:`storage.sqlite.SQLiteStore`: its writer runs each function in a
    transaction, one at a time."""

    _write: Any
    _r: sqlite3.Connection

    @staticmethod
    def _budget_take(c: sqlite3.Connection, name: str, key: str, want: int, total: int,
                     token: str) -> int:
        row = c.execute("SELECT amount, tokens FROM budget_grant WHERE name=? AND key=?",
                        (name, key)).fetchone()
        if row is not None:
            c.execute("UPDATE budget_grant SET tokens=? WHERE name=? AND key=?",
                      (_with(row[1], token), name, key))
            return row[0]
        c.execute("INSERT OR IGNORE INTO budget (name, used) VALUES (?, 0)", (name,))
        used = c.execute("SELECT used FROM budget WHERE name=?", (name,)).fetchone()[0]
        grant = max(0, min(want, total - used))
        c.execute("UPDATE budget SET used=used+? WHERE name=?", (grant, name))
        c.execute("INSERT INTO budget_grant (name, key, amount, tokens) VALUES (?,?,?,?)",
                  (name, key, grant, f"{token},"))
        return grant

    async def budget_take(self, name: str, key: str, want: int, total: int,
                          token: str) -> int:
        return await self._write(lambda c: self._budget_take(c, name, key, want, total, token))

    @staticmethod
    def _budget_release(c: sqlite3.Connection, name: str, key: str, token: str) -> None:
        row = c.execute("SELECT amount, tokens FROM budget_grant WHERE name=? AND key=?",
                        (name, key)).fetchone()
        if row is None:
            return
        left = _without(row[1], token)
        if left:
            c.execute("UPDATE budget_grant SET tokens=? WHERE name=? AND key=?",
                      (left, name, key))
            return
        c.execute("DELETE FROM budget_grant WHERE name=? AND key=?", (name, key))
        c.execute("UPDATE budget SET used=used-? WHERE name=?", (row[0], name))

    async def budget_release(self, name: str, key: str, token: str) -> None:
        await self._write(lambda c: self._budget_release(c, name, key, token))

    @staticmethod
    def _budget_settle(c: sqlite3.Connection, name: str, key: str, amount: int) -> None:
        row = c.execute("SELECT amount FROM budget_grant WHERE name=? AND key=?",
                        (name, key)).fetchone()
        if row is None or row[0] <= amount:
            return
        c.execute("UPDATE budget_grant SET amount=? WHERE name=? AND key=?", (amount, name, key))
        c.execute("UPDATE budget SET used=used-? WHERE name=?", (row[0] - amount, name))

    async def budget_settle(self, name: str, key: str, amount: int) -> None:
        await self._write(lambda c: self._budget_settle(c, name, key, amount))

    async def budget_used(self, name: str) -> int:
        row = self._r.execute("SELECT used FROM budget WHERE name=?", (name,)).fetchone()
        return row[0] if row else 0


class PostgresBudgets:
    """For :class:`storage.postgres.PostgresStore`: the campaign's budget row is locked for
    the length of each transaction, so its grants are taken one at a time."""

    pool: Any

    async def budget_take(self, name: str, key: str, want: int, total: int,
                          token: str) -> int:
        async with self.pool.acquire() as c, c.transaction():
            await c.execute("INSERT INTO budget (name, used) VALUES ($1, 0) "
                            "ON CONFLICT DO NOTHING", name)
            used = await c.fetchval("SELECT used FROM budget WHERE name=$1 FOR UPDATE", name)
            row = await c.fetchrow("SELECT amount, tokens FROM budget_grant "
                                   "WHERE name=$1 AND key=$2", name, key)
            if row is not None:
                await c.execute("UPDATE budget_grant SET tokens=$3 WHERE name=$1 AND key=$2",
                                name, key, _with(row["tokens"], token))
                return row["amount"]
            grant = max(0, min(want, total - used))
            await c.execute("UPDATE budget SET used=used+$2 WHERE name=$1", name, grant)
            await c.execute("INSERT INTO budget_grant (name, key, amount, tokens) "
                            "VALUES ($1,$2,$3,$4)", name, key, grant, f"{token},")
            return grant

    async def budget_release(self, name: str, key: str, token: str) -> None:
        async with self.pool.acquire() as c, c.transaction():
            await c.fetchval("SELECT used FROM budget WHERE name=$1 FOR UPDATE", name)
            row = await c.fetchrow("SELECT amount, tokens FROM budget_grant "
                                   "WHERE name=$1 AND key=$2", name, key)
            if row is None:
                return
            left = _without(row["tokens"], token)
            if left:
                await c.execute("UPDATE budget_grant SET tokens=$3 WHERE name=$1 AND key=$2",
                                name, key, left)
                return
            await c.execute("DELETE FROM budget_grant WHERE name=$1 AND key=$2", name, key)
            await c.execute("UPDATE budget SET used=used-$2 WHERE name=$1", name,
                            row["amount"])

    async def budget_settle(self, name: str, key: str, amount: int) -> None:
        async with self.pool.acquire() as c, c.transaction():
            await c.fetchval("SELECT used FROM budget WHERE name=$1 FOR UPDATE", name)
            had = await c.fetchval("SELECT amount FROM budget_grant WHERE name=$1 AND key=$2",
                                   name, key)
            if had is None or had <= amount:
                return
            await c.execute("UPDATE budget_grant SET amount=$3 WHERE name=$1 AND key=$2",
                            name, key, amount)
            await c.execute("UPDATE budget SET used=used-$2 WHERE name=$1", name, had - amount)

    async def budget_used(self, name: str) -> int:
        return await self.pool.fetchval("SELECT used FROM budget WHERE name=$1", name) or 0


# One hash per campaign, in one cluster slot ("budget:{name}"): field "used", and per key
# "g:<key>" (the grant) and "t:<key>" (the attempts holding it, "token," each).
BUDGET_TAKE = """
local g = redis.call('HGET', KEYS[1], 'g:' .. ARGV[1])
if not g then
  local left = tonumber(ARGV[3]) - tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
  g = math.max(0, math.min(tonumber(ARGV[2]), left))
  redis.call('HSET', KEYS[1], 'g:' .. ARGV[1], g)
  redis.call('HINCRBY', KEYS[1], 'used', g)
end
local t = redis.call('HGET', KEYS[1], 't:' .. ARGV[1]) or ''
if not string.find(',' .. t, ',' .. ARGV[4] .. ',', 1, true) then
  redis.call('HSET', KEYS[1], 't:' .. ARGV[1], t .. ARGV[4] .. ',')
end
return tonumber(g)
"""

BUDGET_RELEASE = """
local t = redis.call('HGET', KEYS[1], 't:' .. ARGV[1])
if not t then return 0 end
local s, e = string.find(',' .. t, ',' .. ARGV[2] .. ',', 1, true)
if not s then return 0 end
t = string.sub(t, 1, s - 1) .. string.sub(t, e)
if t == '' then
  local g = tonumber(redis.call('HGET', KEYS[1], 'g:' .. ARGV[1]) or '0')
  if g > 0 then  -- (Lua would write -0 for a grant of 0, which HINCRBY refuses)
    redis.call('HINCRBY', KEYS[1], 'used', 0 - g)
  end
  redis.call('HDEL', KEYS[1], 'g:' .. ARGV[1], 't:' .. ARGV[1])
else
  redis.call('HSET', KEYS[1], 't:' .. ARGV[1], t)
end
return 1
"""

BUDGET_SETTLE = """
local g = tonumber(redis.call('HGET', KEYS[1], 'g:' .. ARGV[1]) or '-1')
local a = tonumber(ARGV[2])
if g <= a then return 0 end
redis.call('HSET', KEYS[1], 'g:' .. ARGV[1], a)
redis.call('HINCRBY', KEYS[1], 'used', a - g)
return 1
"""


class RedisBudgets:
    """For the Redis stores (one server, Sentinel, Cluster): a Lua script on one hash."""

    client: Any

    @staticmethod
    def _budget_key(name: str) -> str:
        return f"budget:{{{name}}}"

    def _budget(self) -> tuple[Any, Any, Any]:
        # bound to the client of the moment (a reopened store has a new one); redis-py
        # loads a script the server does not have yet and runs it by its hash after
        return (self.client.register_script(BUDGET_TAKE),
                self.client.register_script(BUDGET_RELEASE),
                self.client.register_script(BUDGET_SETTLE))

    async def budget_take(self, name: str, key: str, want: int, total: int,
                          token: str) -> int:
        return int(await self._budget()[0](keys=[self._budget_key(name)],
                                           args=[key, want, total, token]))

    async def budget_release(self, name: str, key: str, token: str) -> None:
        await self._budget()[1](keys=[self._budget_key(name)], args=[key, token])

    async def budget_settle(self, name: str, key: str, amount: int) -> None:
        await self._budget()[2](keys=[self._budget_key(name)], args=[key, amount])

    async def budget_used(self, name: str) -> int:
        n = await self.client.hget(self._budget_key(name), "used")
        return int(n) if n is not None else 0
