"""The PostgreSQL backend's schema, as numbered migrations applied in order.

``memberbot_schema`` holds the version reached. A migration is never edited once released: a
change is a new entry at the end. The server applies what is missing when it starts (under an
advisory lock, so several processes starting together migrate once) and refuses to start on a
schema newer than the last migration it knows (``memberbot db upgrade`` does the same by hand).

``ledger`` and the ``orders`` view are plain tables for analysts (see docs/operators.md).
"""

from __future__ import annotations

from .budgets import POSTGRES_SCHEMA

# Text the commit functions of migrations 2 and 3 share (each migration's SQL stays as
# released; the pieces are only not written twice).
_STOCK_RETURN_IF = (
    "  IF EXISTS (SELECT 1 FROM stock_log WHERE template = p_template AND key = p_key\n"
    """             AND dir = 'take') THEN
    INSERT INTO stock_log (template, key, dir) VALUES (p_template, p_key, 'ret')
      ON CONFLICT DO NOTHING;
    IF FOUND THEN
      UPDATE stock SET remaining = remaining + 1 WHERE template = p_template;
    END IF;
  END IF;
END $$;
""")

_COMMIT_PARAMS = """CREATE FUNCTION memberbot_commit(
    p_id text, p_expect bigint, p_version bigint, p_data bytea, p_idx jsonb,
    p_key text, p_result bytea, p_now bigint,
    p_idx_names text[], p_idx_rname text[], p_idx_num bigint[], p_idx_tag text[],
    p_l_kind text[], p_l_at bigint[], p_l_points bigint[], p_l_amount bigint[],
    p_l_ref text[], p_l_data text[],
    p_o_id text[], p_o_kind text[], p_o_period text[], p_o_status text[], p_o_data text[],
    p_s_template text[], p_s_key text[]"""

_COMMIT_WRITE = """  IF p_key IS NOT NULL AND EXISTS (SELECT 1 FROM idem WHERE member_id = p_id
                                   AND key = p_key) THEN
    RETURN 1;
  END IF;
  IF p_version > 0 THEN
    IF p_expect = 0 THEN
      INSERT INTO members (id, version, data, idx) VALUES (p_id, p_version, p_data, p_idx)
        ON CONFLICT DO NOTHING;
    ELSE
      UPDATE members SET version = p_version, data = p_data, idx = p_idx
        WHERE id = p_id AND version = p_expect;
    END IF;
    IF NOT FOUND THEN
      RETURN 2;
    END IF;
  END IF;
"""

_COMMIT_TAIL = """  IF p_key IS NOT NULL THEN
    INSERT INTO idem (member_id, key, result, at) VALUES (p_id, p_key, p_result, p_now)
      ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'key committed concurrently' USING ERRCODE = '40001';
    END IF;
  END IF;
  IF cardinality(p_idx_names) > 0 THEN
    DELETE FROM idx WHERE member_id = p_id AND name = ANY(p_idx_names);
    INSERT INTO idx (name, member_id, num, tag)
      SELECT n, p_id, x, t FROM unnest(p_idx_rname, p_idx_num, p_idx_tag) AS u(n, x, t);
  END IF;
  IF cardinality(p_l_kind) > 0 THEN
    INSERT INTO ledger (member_id, kind, at, points, amount_fen, ref, data)
      SELECT p_id, k, a, p, f, r, d::jsonb
      FROM unnest(p_l_kind, p_l_at, p_l_points, p_l_amount, p_l_ref, p_l_data)
        AS u(k, a, p, f, r, d);
  END IF;
  IF cardinality(p_o_id) > 0 THEN
    INSERT INTO outbox (id, member_id, kind, period, status, created_at, updated_at, data)
      SELECT o, p_id, k, pe, s, p_now, p_now, d::jsonb
      FROM unnest(p_o_id, p_o_kind, p_o_period, p_o_status, p_o_data) AS u(o, k, pe, s, d)
      ON CONFLICT DO NOTHING;
  END IF;
  FOR i IN 1 .. coalesce(cardinality(p_s_template), 0) LOOP
    PERFORM memberbot_stock_return(p_s_template[i], p_s_key[i]);
  END LOOP;
  RETURN 0;
END $$;
"""


MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "members, idempotency, uniques, indexes, ledger, outbox, stock, kv", """
CREATE TABLE members (id text COLLATE "C" PRIMARY KEY, version bigint NOT NULL,
    data bytea NOT NULL, idx jsonb);
CREATE TABLE idem (member_id text NOT NULL, key text NOT NULL, result bytea,
    at bigint NOT NULL, PRIMARY KEY (member_id, key));
CREATE TABLE uniques (kind text NOT NULL, value text NOT NULL, member_id text NOT NULL,
    PRIMARY KEY (kind, value));
CREATE TABLE idx (name text NOT NULL, member_id text COLLATE "C" NOT NULL, num bigint, tag text);
CREATE INDEX idx_num ON idx (name, num, member_id) WHERE num IS NOT NULL;
CREATE INDEX idx_tag ON idx (name, tag, member_id) WHERE tag IS NOT NULL;
CREATE INDEX idx_member ON idx (member_id, name);
CREATE TABLE ledger (id bigserial PRIMARY KEY, member_id text NOT NULL, kind text NOT NULL,
    at bigint NOT NULL, points bigint NOT NULL, amount_fen bigint NOT NULL, ref text NOT NULL,
    data jsonb);
CREATE INDEX ledger_member ON ledger (member_id, id);
CREATE INDEX ledger_at ON ledger (at);
CREATE TABLE outbox (id text COLLATE "C" PRIMARY KEY, member_id text NOT NULL, kind text NOT NULL,
    period text NOT NULL, status text NOT NULL, created_at bigint NOT NULL,
    updated_at bigint NOT NULL, data jsonb NOT NULL DEFAULT '{}');
CREATE INDEX outbox_status ON outbox (status, kind);
CREATE TABLE stock (template text PRIMARY KEY, remaining bigint NOT NULL, total bigint NOT NULL);
CREATE TABLE stock_log (template text NOT NULL, key text NOT NULL, dir text NOT NULL,
    PRIMARY KEY (template, key, dir));
CREATE TABLE kv (key text PRIMARY KEY, value text NOT NULL, expires double precision);
CREATE VIEW orders AS
    SELECT id AS ledger_id, member_id, kind,
           coalesce(data->>'order_id', substr(ref, 7)) AS order_id,
           (data->>'store_id') AS store_id, amount_fen, (data->>'gross')::bigint AS gross_fen,
           to_timestamp(at) AS at, ref, data
    FROM ledger WHERE kind IN ('order', 'refund');
"""),
    (2, "the commit function: one round trip per update, under the version check", ("""
CREATE FUNCTION memberbot_stock_return(p_template text, p_key text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
"""
     + _STOCK_RETURN_IF
     + """
-- Returns 0 when committed, 1 when the key was committed before (read its result), 2 when
-- the member's version moved (read again, rerun the step). A concurrent commit of the same
-- key raises serialization_failure (40001), which rolls this call back: the caller reads again.
"""
     + _COMMIT_PARAMS
     + """) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
  i int;
BEGIN
"""
     + _COMMIT_WRITE
     + _COMMIT_TAIL)),
    (3, "commit preconditions: claims bound and stock taken by the commit; a returned unit "
        "is taken again by its key's retry", ("""
-- Takes and returns of one template take the stock row's lock first, so that a key's take
-- and return never interleave. A key holds a unit between its take and its return.
CREATE OR REPLACE FUNCTION memberbot_stock_return(p_template text, p_key text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM stock WHERE template = p_template FOR UPDATE;
"""
     + _STOCK_RETURN_IF
     + """
CREATE FUNCTION memberbot_stock_take(p_template text, p_key text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM stock WHERE template = p_template FOR UPDATE;
  IF EXISTS (SELECT 1 FROM stock_log WHERE template = p_template AND key = p_key
             AND dir = 'take')
     AND NOT EXISTS (SELECT 1 FROM stock_log WHERE template = p_template AND key = p_key
                     AND dir = 'ret') THEN
    RETURN true;
  END IF;
  UPDATE stock SET remaining = remaining - 1 WHERE template = p_template AND remaining > 0;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  DELETE FROM stock_log WHERE template = p_template AND key = p_key AND dir = 'ret';
  INSERT INTO stock_log (template, key, dir) VALUES (p_template, p_key, 'take')
    ON CONFLICT DO NOTHING;
  RETURN true;
END $$;

DROP FUNCTION memberbot_commit(text, bigint, bigint, bytea, jsonb, text, bytea, bigint,
    text[], text[], bigint[], text[], text[], bigint[], bigint[], bigint[], text[], text[],
    text[], text[], text[], text[], text[], text[], text[]);

-- As version 2, and first the preconditions: each claim (p_c_kind, p_c_value) is bound to the
-- member or already its own, each stock take (p_t_template, p_t_key) holds or takes a unit;
-- else an exception (MBU01: the unique's owner in DETAIL; MBS01: no stock) rolls it all back.
"""
     + _COMMIT_PARAMS
     + """,
    p_c_kind text[], p_c_value text[], p_t_template text[], p_t_key text[]) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
  i int;
  owner text;
BEGIN
"""
     + _COMMIT_WRITE
     + """  FOR i IN 1 .. coalesce(cardinality(p_c_kind), 0) LOOP
    -- insert first: a concurrent claim of the same value waits on it, then sees the owner
    INSERT INTO uniques (kind, value, member_id) VALUES (p_c_kind[i], p_c_value[i], p_id)
      ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
      SELECT member_id INTO owner FROM uniques WHERE kind = p_c_kind[i]
        AND value = p_c_value[i];
      IF owner IS DISTINCT FROM p_id THEN
        RAISE EXCEPTION USING ERRCODE = 'MBU01', MESSAGE = 'unique taken',
          DETAIL = coalesce(owner, ''), HINT = p_c_kind[i];
      END IF;
    END IF;
  END LOOP;
  FOR i IN 1 .. coalesce(cardinality(p_t_template), 0) LOOP
    IF NOT memberbot_stock_take(p_t_template[i], p_t_key[i]) THEN
      RAISE EXCEPTION USING ERRCODE = 'MBS01', MESSAGE = 'no stock',
        DETAIL = p_t_template[i];
    END IF;
  END LOOP;
"""
     + _COMMIT_TAIL)),
    (4, "ledger rows remember when their id was drawn: readers of the ledger in id order stop "
        "before ids a running transaction may still commit", """
ALTER TABLE ledger ADD COLUMN drawn_at timestamptz NOT NULL DEFAULT clock_timestamp();
"""),
    (5, "group commit: the updates waiting at one moment commit in one transaction", """
-- The commits of several members in one call and one transaction (one fsync), set-based: one
-- statement per table for the whole batch. Item k is (b_id[k], b_expect[k], ...) as for
-- memberbot_commit; its index, ledger, outbox and stock-return rows carry k in *_item.
-- Commits with claims or stock takes (preconditions that can refuse one item) go through
-- memberbot_commit, one each. Returns per item 0 (committed) or 2 (its member's version
-- moved: read again). A key committed concurrently raises serialization_failure (40001) and
-- rolls back the whole batch: the caller commits its items one by one.
CREATE FUNCTION memberbot_commit_batch(
    b_id text[], b_expect bigint[], b_version bigint[], b_data bytea[], b_idx jsonb[],
    b_key text[], b_result bytea[], p_now bigint,
    d_item int[], d_name text[],
    r_item int[], r_name text[], r_num bigint[], r_tag text[],
    l_item int[], l_kind text[], l_at bigint[], l_points bigint[], l_amount bigint[],
    l_ref text[], l_data text[],
    o_item int[], o_id text[], o_kind text[], o_period text[], o_status text[], o_data text[],
    s_item int[], s_template text[], s_key text[]) RETURNS int[]
LANGUAGE plpgsql
-- every statement finds its rows through an index, whatever the plan cached while the
-- tables were small: the batch is a handful of members, never a scan
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
AS $$
DECLARE
  won int[];
  n bigint;
  i int;
BEGIN
  WITH x AS (
    SELECT * FROM unnest(b_id, b_expect, b_version, b_data, b_idx) WITH ORDINALITY
      AS x(id, e, v, d, j, k)),
  u AS (
    UPDATE members m SET version = x.v, data = x.d, idx = x.j FROM x
      WHERE x.v > 0 AND x.e > 0 AND m.id = x.id AND m.version = x.e RETURNING x.k),
  c AS (
    INSERT INTO members (id, version, data, idx)
      SELECT id, v, d, j FROM x WHERE v > 0 AND e = 0 ORDER BY id
      ON CONFLICT DO NOTHING RETURNING id)
  SELECT coalesce(array_agg(w.k::int), '{}') INTO won FROM (
    SELECT k FROM u UNION ALL SELECT x.k FROM x JOIN c ON c.id = x.id
    UNION ALL SELECT k FROM x WHERE v = 0) AS w;
  INSERT INTO idem (member_id, key, result, at)
    SELECT b_id[k], b_key[k], b_result[k], p_now FROM unnest(won) AS k
    WHERE b_key[k] IS NOT NULL
    ON CONFLICT DO NOTHING;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n < (SELECT count(*) FROM unnest(won) AS k WHERE b_key[k] IS NOT NULL) THEN
    RAISE EXCEPTION 'key committed concurrently' USING ERRCODE = '40001';
  END IF;
  IF d_item IS NOT NULL THEN
    DELETE FROM idx USING unnest(d_item, d_name) AS d(k, name)
      WHERE d.k = ANY(won) AND idx.member_id = b_id[d.k] AND idx.name = d.name;
  END IF;
  IF r_item IS NOT NULL THEN
    INSERT INTO idx (name, member_id, num, tag)
      SELECT r.name, b_id[r.k], r.num, r.tag
      FROM unnest(r_item, r_name, r_num, r_tag) AS r(k, name, num, tag) WHERE r.k = ANY(won);
  END IF;
  IF l_item IS NOT NULL THEN
    INSERT INTO ledger (member_id, kind, at, points, amount_fen, ref, data)
      SELECT b_id[l.k], l.kind, l.a, l.p, l.f, l.r, l.d::jsonb
      FROM unnest(l_item, l_kind, l_at, l_points, l_amount, l_ref, l_data) WITH ORDINALITY
        AS l(k, kind, a, p, f, r, d, o)
      WHERE l.k = ANY(won) ORDER BY l.o;
  END IF;
  IF o_item IS NOT NULL THEN
    INSERT INTO outbox (id, member_id, kind, period, status, created_at, updated_at, data)
      SELECT o.id, b_id[o.k], o.kind, o.pe, o.s, p_now, p_now, o.d::jsonb
      FROM unnest(o_item, o_id, o_kind, o_period, o_status, o_data) AS o(k, id, kind, pe, s, d)
      WHERE o.k = ANY(won)
      ON CONFLICT DO NOTHING;
  END IF;
  FOR i IN 1 .. coalesce(cardinality(s_item), 0) LOOP
    IF s_item[i] = ANY(won) THEN
      PERFORM memberbot_stock_return(s_template[i], s_key[i]);
    END IF;
  END LOOP;
  RETURN ARRAY(SELECT CASE WHEN k = ANY(won) THEN 0 ELSE 2 END
               FROM generate_subscripts(b_id, 1) AS k ORDER BY k);
END $$;

-- members rows are rewritten by every update: room on each page keeps the new version on
-- the same page (a HOT update, no new primary-key entry)
ALTER TABLE members SET (fillfactor = 80);
"""),
    (6, "campaign points budgets: a counter per campaign and its grants per order",
     POSTGRES_SCHEMA),
]

LATEST = MIGRATIONS[-1][0]

VERSION_TABLE = "CREATE TABLE IF NOT EXISTS memberbot_schema (version int NOT NULL)"

TABLES = ("members", "idem", "uniques", "idx", "ledger", "outbox", "stock", "stock_log", "kv",
          "budget", "budget_grant")
