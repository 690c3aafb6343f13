"""``memberbot db upgrade``: create or migrate the store's schema (PostgreSQL) by hand."""

from __future__ import annotations

import asyncio

import click

from storage import StoreError, open_store

from .operator import fail, load_settings


def register(main: click.Group) -> None:
    @main.group("db")
    def db() -> None:
        """The store's schema."""

    @db.command("upgrade")
    def upgrade() -> None:
        """Apply the schema migrations the store lacks (PostgreSQL); SQLite and Redis need
        none. The server also applies them when it starts, and refuses a newer schema."""

        settings = load_settings()

        async def go() -> str:
            store = open_store(settings.store_url, settings.data_key)
            await store.open()  # migrates, under a lock shared with starting servers
            try:
                schema = getattr(store, "schema", None)
                if schema is None:
                    return f"{store.kind}: no schema migrations to run"
                before, after = schema
                if before == after:
                    return f"{store.kind}: schema is current (version {after})"
                return f"{store.kind}: schema upgraded from version {before} to {after}"
            finally:
                await store.close()

        try:
            click.echo(asyncio.run(go()))
        except StoreError as e:
            fail(str(e))
