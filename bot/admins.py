"""Admin accounts and roles (权限分级) for ``/admin``: ``memberbot admin add-user NAME --role
viewer|operator|admin``, ``admin list``, ``admin disable``.

- **viewer** reads the dashboards and member pages;
- **operator** also edits tags, adjusts points (within the rules' caps, with a reason) and
  issues coupons on the member page;
- **admin** also reads the audit trail and manages accounts.

Passwords are hashed with Argon2id (argon2-cffi). Accounts live in the store's kv, so every
process sees the same ones and a disabled account is refused on its next request.
``MEMBERBOT_ADMIN_PASSWORD`` keeps working: it logs in the bootstrap account ``admin`` with
the admin role.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from storage import ConflictError, Store

from . import keys

ROLES = ("viewer", "operator", "admin")
BOOTSTRAP = "admin"  # the account MEMBERBOT_ADMIN_PASSWORD logs in
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{1,31}")
MIN_PASSWORD = 10
LOG_KEEP = 1000
_hasher = PasswordHasher()  # Argon2id with the library's (RFC 9106) parameters


class AccountError(ValueError):
    """A refused account change; one line for the operator."""


def allows(role: str, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may: admin ⊃ operator ⊃ viewer."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


@dataclass
class Account:
    name: str
    role: str
    hash: str
    disabled: bool = False
    created_at: str = ""

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "hash"}


class Accounts:
    """The accounts in the store's kv: one record per name and the list of names."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, name: str) -> Account | None:
        raw = await self.store.kv_get(keys.admin_account(name))
        return Account(**json.loads(raw)) if raw else None

    async def names(self) -> list[str]:
        raw = await self.store.kv_get(keys.admin_accounts())
        return json.loads(raw) if raw else []

    async def all(self) -> list[Account]:
        out = []
        for n in await self.names():
            a = await self.get(n)
            if a is not None:
                out.append(a)
        return out

    async def any(self) -> bool:
        return bool(await self.names())

    async def add(self, name: str, role: str, password: str, now: datetime, *,
                  by: str = "cli") -> Account:
        name = name.strip().lower()
        if not NAME.fullmatch(name):
            raise AccountError(f"name {name!r}: 2 to 32 of a-z 0-9 _ . -, starting with a "
                               "letter or digit")
        if name == BOOTSTRAP:
            raise AccountError(f"name {BOOTSTRAP!r} is the bootstrap account of "
                               "MEMBERBOT_ADMIN_PASSWORD: choose another")
        if role not in ROLES:
            raise AccountError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"the password needs at least {MIN_PASSWORD} characters")
        acc = Account(name, role, _hasher.hash(password), False,
                      now.isoformat(timespec="seconds"))
        if not await self.store.kv_set(keys.admin_account(name), json.dumps(asdict(acc)),
                                       only_new=True):
            raise AccountError(f"an account named {name!r} exists already")
        await self._list_add(name)
        await self.log(now, "add-user", name, "—", f"{role}, enabled", by=by)
        return acc

    async def set(self, acc: Account) -> None:
        await self.store.kv_set(keys.admin_account(acc.name), json.dumps(asdict(acc)))

    async def disable(self, name: str, now: datetime, by: str = "cli") -> Account:
        acc = await self.get(name.strip().lower())
        if acc is None:
            raise AccountError(f"no account named {name!r}")
        before = "disabled" if acc.disabled else "enabled"
        acc.disabled = True
        await self.set(acc)
        await self.log(now, "disable", acc.name, f"{acc.role}, {before}",
                       f"{acc.role}, disabled", by=by)
        return acc

    async def log(self, now: datetime, what: str, name: str, before: str, after: str, *,
                  by: str = "cli") -> None:
        """The account changes' audit trail (who, what, when, before → after), newest last,
        the last ``LOG_KEEP`` kept."""
        key = keys.admin_audit()
        entry = {"at": now.isoformat(timespec="seconds"), "by": by, "what": what,
                 "account": name, "before": before, "after": after}
        for _ in range(100):
            raw = await self.store.kv_get(key)
            rows = json.loads(raw) if raw else []
            new = json.dumps([*rows, entry][-LOG_KEEP:], ensure_ascii=False)
            ok = (await self.store.kv_set(key, new, only_new=True) if raw is None
                  else await self.store.kv_set(key, new, expect=raw))
            if ok:
                return
        raise ConflictError("the account audit trail is too busy: retry")

    async def history(self) -> list[dict[str, Any]]:
        raw = await self.store.kv_get(keys.admin_audit())
        return list(reversed(json.loads(raw))) if raw else []

    async def verify(self, name: str, password: str) -> Account | None:
        """The enabled account if the password is right, else None (same work either way)."""
        acc = await self.get(name.strip().lower())
        try:
            _hasher.verify(acc.hash if acc else _DUMMY, password)
        except (VerificationError, InvalidHashError):
            return None
        if acc is None or acc.disabled:
            return None
        if _hasher.check_needs_rehash(acc.hash):
            acc.hash = _hasher.hash(password)
            await self.set(acc)
        return acc

    async def _list_add(self, name: str) -> None:
        key = keys.admin_accounts()
        for _ in range(100):
            raw = await self.store.kv_get(key)
            names = json.loads(raw) if raw else []
            if name in names:
                return
            new = json.dumps([*names, name])
            ok = (await self.store.kv_set(key, new, only_new=True) if raw is None
                  else await self.store.kv_set(key, new, expect=raw))
            if ok:
                return
        raise ConflictError("the account list is too busy: retry")


_DUMMY = _hasher.hash("memberbot: a password no account has")


def register(main: Any) -> None:
    import asyncio
    import getpass

    import click

    from storage import StoreError, open_store

    from .operator import fail, load_settings

    @main.group("admin")
    def admin() -> None:
        """Accounts for /admin: viewer, operator, admin."""

    def run(fn: Any) -> Any:
        settings = load_settings()

        async def go() -> Any:
            store = open_store(settings.store_url, settings.data_key)
            await store.open()
            try:
                return await fn(Accounts(store))
            finally:
                await store.close()

        try:
            return asyncio.run(go())
        except (AccountError, StoreError) as e:
            fail(str(e))

    @admin.command("add-user")
    @click.argument("name")
    @click.option("--role", type=click.Choice(ROLES), required=True)
    @click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
                  help="prompted when not given (better: it stays out of the shell history)")
    def add_user(name: str, role: str, password: str) -> None:
        """Create account NAME with ROLE."""
        acc = run(lambda a: a.add(name, role, password, datetime.now().astimezone(),
                                  by=f"cli:{getpass.getuser()}"))
        click.echo(f"account {acc.name} created with role {acc.role}")

    @admin.command("list")
    def list_users() -> None:
        """Every account, its role and whether it is disabled."""
        accs = run(lambda a: a.all())
        if not accs:
            click.echo("no accounts (MEMBERBOT_ADMIN_PASSWORD logs in the bootstrap admin)")
        for acc in accs:
            state = "disabled" if acc.disabled else "enabled"
            click.echo(f"{acc.name:<24} {acc.role:<9} {state:<9} created {acc.created_at}")

    @admin.command("disable")
    @click.argument("name")
    def disable(name: str) -> None:
        """Disable account NAME: refused from its next request on."""
        acc = run(lambda a: a.disable(name, datetime.now().astimezone(),
                                      by=f"cli:{getpass.getuser()}"))
        click.echo(f"account {acc.name} disabled")
