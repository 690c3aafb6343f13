"""``memberbot rotate-data-key``: re-seal every member's personal data under the first key of
``MEMBERBOT_DATA_KEY=NEW_KEY,OLD_KEY`` and re-key the phone look-ups, in batches, with a
progress bar; safe to interrupt and run again while the servers keep serving.

Each member is rewritten by one ordinary store update (the store seals with the first key and
opens with any), so a concurrent change to the member is never lost. The phone look-up is
claimed under the new key's hash, then the old keys' hashes are removed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from storage import Store, open_store

from .rules.models import Change, Member

BATCH = 500
IN_FLIGHT = 32


class Progress:
    def start(self, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


async def reseal(store: Store, olds: list[Store], mid: str) -> bool:
    def step(m: Member | None) -> Change:
        return Change(m, m.phone if m is not None else None)  # rewritten: sealed anew

    if await store.get(mid) is None:
        return False
    phone = await store.update(mid, step)
    if phone:
        await store.claim("phone", phone, mid)
        for old in olds:
            await old.release("phone", phone, mid)
    return True


async def rotate(store_url: str, data_key: str, progress: Progress | None = None) -> int:
    """Re-seal every member; returns how many."""
    progress = progress or Progress()
    keys = [k.strip() for k in data_key.split(",") if k.strip()]
    store = open_store(store_url, data_key)
    olds = [open_store(store_url, k) for k in keys[1:]]
    await store.open()
    for o in olds:
        await o.open()
    try:
        progress.start(await store.count_members())
        sem = asyncio.Semaphore(IN_FLIGHT)
        done = 0

        async def one(mid: str) -> None:
            nonlocal done
            async with sem:
                if await reseal(store, olds, mid):
                    done += 1

        after = ""
        while ids := await store.member_ids(after, BATCH):
            await asyncio.gather(*(one(mid) for mid in ids))
            progress.advance(len(ids))
            after = ids[-1]
        return done
    finally:
        for o in olds:
            await o.close()
        await store.close()


def register(main: Any) -> None:
    import click

    from storage import StoreError

    from .operator import fail, load_settings

    @main.command("rotate-data-key")
    def rotate_cmd() -> None:
        """Re-seal personal data under the first key of MEMBERBOT_DATA_KEY=NEW,OLD."""
        settings = load_settings()
        if "," not in settings.data_key:
            fail("MEMBERBOT_DATA_KEY holds one key: set it to NEW_KEY,OLD_KEY (the new key "
                 "first) on every process, restart them, then run rotate-data-key")
        from .jobs.cli import Bar

        async def go() -> int:
            with Bar("re-sealing") as bar:
                return await rotate(settings.store_url, settings.data_key, bar)

        try:
            n = asyncio.run(go())
        except StoreError as e:
            fail(str(e))
        click.echo(f"re-sealed {n} members under the new key; now set MEMBERBOT_DATA_KEY to "
                   "the new key alone and restart")
