"""The storage contract every backend implements (SQLite, Redis, Redis Cluster, PostgreSQL).

One member, one atomic step: :meth:`Store.update` loads the aggregate, runs a pure step and
commits the new aggregate with its ledger entries, index entries and outbox entries together,
under a version check, once per idempotency key.
"""

from __future__ import annotations

import abc
import contextvars
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.rules.models import Change, Member

from .shared import Hasher, unique_value, unique_values

Step = Callable[[Member | None], Change]


class StoreError(Exception):
    """The store cannot be used (unreachable, unwritable, misconfigured). One-line message."""


class StoreUnavailable(StoreError):
    """A transient failure (Redis down, disk full): answer 'busy', write nothing, retry later."""


class ConflictError(StoreError):
    """Too many concurrent writers on one member: the step was retried and never committed."""


class UniqueTaken(Exception):  # noqa: N818 - a rule outcome, not a failure of the store
    """A commit's claim (``Change.claims``) is bound to another member: nothing was written."""

    def __init__(self, kind: str, value: str, owner: str) -> None:
        super().__init__(f"{kind} {value} belongs to another member")
        self.kind, self.value, self.owner = kind, value, owner


class OutOfStock(Exception):  # noqa: N818
    """A commit's stock take (``Change.stock_takes``) found no unit left: nothing was written."""

    def __init__(self, template: str) -> None:
        super().__init__(f"no stock left for {template}")
        self.template = template


@dataclass
class LedgerRow:
    id: int
    member_id: str
    kind: str
    at: int
    points: int
    amount_fen: int
    ref: str
    data: dict[str, Any]


@dataclass
class OutboxRow:
    id: str  # "<member_id>|<kind>|<period>"
    member_id: str
    kind: str
    period: str
    # pending -> sending -> sent | failed | unreachable | skipped | uncertain (a batch in
    # flight at a crash, never resent); sending -> pending again when never called
    status: str
    created_at: int
    data: dict[str, Any]


class StoreMetrics:
    """The metrics hooks of the contract, reported the same way by every backend: the base
    class times each backend's ``update`` (:meth:`updated`, once per call, retries
    included), reports each version conflict the backend retried (:meth:`conflicted`,
    whenever its ``conflicts`` counter grows) and each update refused by an outage
    (:meth:`unavailable`: "busy, retry later"). These do nothing; the application installs
    its own (``bot.metrics.STORE_METRICS``: memberbot_store_update_seconds,
    memberbot_store_conflicts_total and memberbot_store_unavailable_total, labelled with
    the backend's ``kind``)."""

    def updated(self, kind: str, seconds: float) -> None:
        pass

    def conflicted(self, kind: str, n: int) -> None:
        pass

    def unavailable(self, kind: str) -> None:
        pass


_TIMING: contextvars.ContextVar[bool] = contextvars.ContextVar("store_update_timed",
                                                              default=False)


def _timed(update: Callable) -> Callable:
    """``update`` reporting its duration to the store's hooks (an override that calls its
    parent's is timed once)."""

    @functools.wraps(update)
    async def timed(self: Store, *a: Any, **kw: Any) -> Any:
        if _TIMING.get():
            return await update(self, *a, **kw)
        token = _TIMING.set(True)
        t0 = time.perf_counter()
        try:
            return await update(self, *a, **kw)
        except StoreUnavailable:
            self.metrics.unavailable(self.kind)
            raise
        finally:
            _TIMING.reset(token)
            self.metrics.updated(self.kind, time.perf_counter() - t0)

    timed.timed = True  # type: ignore[attr-defined]
    return timed


class Store(abc.ABC):
    """A member store. Backends: ``sqlite:///path``, ``redis://host:port/db`` (and
    ``redis+sentinel://``), ``redis+cluster://h1:p1,h2:p2`` and ``postgresql://user@host/db``.
    A backend is one module (and its schema) implementing this class, chosen by
    :func:`storage.open_store` from its URL scheme, and one parameter of the contract suite
    (``tests/contract``)."""

    # What every backend declares: its name (the label of its metrics, shown on /healthz and
    # by the operator commands) and the codec of its personal data. What the base class
    # gives every backend alike: ``conflicts`` (the version conflicts it retried so far; a
    # backend adds to it) and the metrics hooks ``metrics`` (see :class:`StoreMetrics`).
    kind: str = "?"
    codec: Hasher
    metrics: StoreMetrics = StoreMetrics()
    # Only one serving process writes it (SQLite: --workers N is refused), so what that process
    # holds in memory is all there is besides what is stored (callback nonces, bot.handlers.guard).
    one_process: bool = False
    # A change's claims are checked inside its commit and exist only once it commits (SQLite,
    # PostgreSQL, Redis). Redis Cluster takes them before the commit (another slot) and gives
    # back what a failed attempt took, even where a concurrent writer committed the same
    # member meanwhile: a claim two writers race for is taken on its own there first.
    claims_at_commit: bool = True

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if not getattr(cls, "__abstractmethods__", None) and cls.kind == "?":
            raise TypeError(f"store backend {cls.__name__} must declare its kind")
        own = cls.__dict__.get("update")
        if own is not None and not getattr(own, "timed", False):
            cls.update = _timed(own)  # every backend's update reports its latency

    @property
    def conflicts(self) -> int:
        """Version conflicts this store retried so far (each reported to ``metrics``)."""
        return self.__dict__.get("_conflicts", 0)

    @conflicts.setter
    def conflicts(self, n: int) -> None:
        more = n - self.conflicts
        self.__dict__["_conflicts"] = n
        if more > 0:
            self.metrics.conflicted(self.kind, more)

    def _uval(self, kind: str, value: str) -> str:
        return unique_value(self.codec, kind, value)

    def _uvals(self, kind: str, value: str) -> list[str]:
        return unique_values(self.codec, kind, value)

    # -- life cycle ---------------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create what is missing; raise :class:`StoreError` with a clear line."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> dict[str, Any]:
        """Health: ``{"kind": ..., "ok": bool, ...}``."""

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- members ------------------------------------------------------------------------
    @abc.abstractmethod
    async def get(self, member_id: str) -> Member | None:
        """The committed aggregate, or ``None``."""

    @abc.abstractmethod
    async def update(self, member_id: str, step: Step, *, key: str | None = None) -> Any:
        """Run ``step`` on the member atomically and return ``Change.result``.

        If ``key`` was committed before for this member, ``step`` is not run and the stored
        result is returned. A step that raises commits nothing and the exception propagates.

        The change's preconditions hold at commit or nothing is written: every
        ``Change.claims`` (kind, value) is free or already this member's (else
        :class:`UniqueTaken`), and is bound to the member by the commit (an order id is
        bound only by the commit that records the order); every ``Change.stock_takes``
        (template, key) holds a unit or takes one (else :class:`OutOfStock`), so a coupon and
        its unit of stock are one write.
        """

    @abc.abstractmethod
    async def seen(self, member_id: str, key: str) -> tuple[bool, Any]:
        """Whether ``key`` was committed for the member, and its stored result."""

    async def idem_all(self, member_id: str) -> dict[str, Any]:
        """Every idempotency key committed for the member with its stored result (backups)."""
        raise StoreError(f"the {self.kind} store cannot list idempotency keys for a backup")

    @abc.abstractmethod
    async def count_members(self) -> int: ...

    @abc.abstractmethod
    async def member_ids(self, after: str = "", limit: int = 1000) -> list[str]:
        """Member ids in id order, for full scans (reports, nightly jobs)."""

    # -- uniques across members ---------------------------------------------------------
    @abc.abstractmethod
    async def claim(self, kind: str, value: str, member_id: str) -> str:
        """Bind ``kind:value`` to ``member_id`` unless bound already; return the owner."""

    @abc.abstractmethod
    async def lookup(self, kind: str, value: str) -> str | None: ...

    @abc.abstractmethod
    async def release(self, kind: str, value: str, member_id: str) -> None:
        """Unbind ``kind:value`` when ``member_id`` owns it."""

    # -- indexes -------------------------------------------------------------------------
    @abc.abstractmethod
    async def range(self, index: str, lo: int, hi: int, *, after: str = "",
                    limit: int | None = None) -> list[tuple[str, int]]:
        """Members whose integer ``index`` lies in ``[lo, hi]``: ``[(member_id, value)]``,
        ordered by member id, starting after ``after``."""

    @abc.abstractmethod
    async def tagged(self, index: str, value: str, *, after: str = "",
                     limit: int | None = None) -> list[str]:
        """Members whose text ``index`` equals (or whose list contains) ``value``."""

    @abc.abstractmethod
    async def tag_counts(self, index: str) -> dict[str, int]:
        """Member count per value of a text index (tier distribution, RFM segments)."""

    # -- coupon stock --------------------------------------------------------------------
    @abc.abstractmethod
    async def stock_init(self, template: str, total: int) -> None:
        """Set the stock of a template the first time it is seen (never resets it)."""

    @abc.abstractmethod
    async def stock_set(self, template: str, remaining: int) -> None: ...

    @abc.abstractmethod
    async def stock_take(self, template: str, key: str) -> bool:
        """Take one unit for ``key``; False when none is left. Idempotent while the key holds
        its unit; once given back, the key's next take takes a new unit (or fails)."""

    @abc.abstractmethod
    async def stock_return(self, template: str, key: str) -> None:
        """Give back the unit ``key`` holds (at most once per take)."""

    @abc.abstractmethod
    async def stock(self, template: str) -> int | None: ...

    # -- campaign budgets (storage/budgets.py) ------------------------------------------
    @abc.abstractmethod
    async def budget_take(self, name: str, key: str, want: int, total: int,
                          token: str) -> int:
        """Grant up to ``want`` points of budget ``name`` (``total`` in all) to ``key``, once:
        every later take under ``key`` gets the same grant. ``token`` names the attempt."""

    @abc.abstractmethod
    async def budget_release(self, name: str, key: str, token: str) -> None:
        """Attempt ``token`` did not commit: its grant goes back when no attempt holds it."""

    @abc.abstractmethod
    async def budget_settle(self, name: str, key: str, amount: int) -> None:
        """``key`` committed using ``amount`` of its grant: the rest goes back (once)."""

    @abc.abstractmethod
    async def budget_used(self, name: str) -> int: ...

    # -- ledger and outbox ---------------------------------------------------------------
    @abc.abstractmethod
    async def ledger(self, *, member_id: str | None = None, since: int | None = None,
                     until: int | None = None, kinds: list[str] | None = None,
                     after_id: int = 0, limit: int = 10000,
                     newest_first: bool = False) -> list[LedgerRow]:
        """Ledger rows in commit order (``newest_first``: the reverse), filtered; at most
        ``limit`` of them (a statement: ``member_id=m, newest_first=True, limit=10``)."""

    @abc.abstractmethod
    async def outbox(self, *, status: str | None = None, kind: str | None = None,
                     limit: int = 10000) -> list[OutboxRow]: ...

    @abc.abstractmethod
    async def outbox_set(self, row_id: str, status: str, data: dict[str, Any] | None = None,
                         *, expect: str | None = None) -> bool:
        """Move an outbox row to ``status`` (only from ``expect`` when given); merge data."""

    # -- small shared state: token caches, leader locks, rate limits --------------------
    @abc.abstractmethod
    async def kv_get(self, key: str) -> str | None: ...

    @abc.abstractmethod
    async def kv_set(self, key: str, value: str, *, ttl: float | None = None,
                     only_new: bool = False, expect: str | None = None) -> bool:
        """Set ``key``; with ``only_new`` only if absent; with ``expect`` only if it holds
        that value (compare-and-set). Returns whether it was written."""

    @abc.abstractmethod
    async def kv_delete(self, key: str, *, expect: str | None = None) -> bool: ...

    @abc.abstractmethod
    async def incr_window(self, key: str, ttl: float) -> int:
        """Increment a counter that expires ``ttl`` seconds after its first increment."""


def outbox_id(member_id: str, kind: str, period: str) -> str:
    return f"{member_id}|{kind}|{period}"
