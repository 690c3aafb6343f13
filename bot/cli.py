"""The ``memberbot`` command: serve, and the operator commands added by their modules."""

from __future__ import annotations

import logging
import sys

import click

from storage import StoreError

from . import (
    admins,
    backup,
    card_cli,
    chat,
    dbcli,
    export,
    importer,
    invites_cli,
    menu,
    report,
    rotate,
    staff,
    wecom_cli,
)
from .handlers import guard
from .jobs import cli as jobs_cli
from .jobs import scheduler as jobs_scheduler
from .operator import fail, load_settings
from .rules.config import RulesError
from .settings import SettingsError
from .web import CTX, create_app


@click.group()
@click.version_option(package_name="wechat-member-bot")
def main() -> None:
    """memberbot: a brand's membership programme inside WeChat."""


def _serving(line: str) -> None:
    click.echo(line, err=True)
    from .workers import ready

    ready()  # under --workers: tells the parent this worker serves


def _serve_one(host: str, port: int, scheduler: bool, reuse_port: bool) -> None:
    import asyncio

    from aiohttp import web

    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    settings = load_settings()
    try:
        app = create_app(settings)
        if scheduler:
            jobs_scheduler.setup(app)
    except (StoreError, RulesError, SettingsError) as e:
        fail(str(e))
    app.on_startup.append(_tune_process)
    accounts = [0]

    async def count_accounts(app: web.Application) -> None:  # the store is open by now
        accounts[0] = len(await app[CTX].accounts.names())

    app.on_startup.append(count_accounts)
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%Y-%m-%dT%H:%M:%S%z")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        web.run_app(app, host=host, port=port, reuse_port=reuse_port, access_log=None,
                    **guard.server_options(settings),
                    print=lambda _: _serving(f"memberbot serving on http://{host}:{port} "
                                             f"({settings.loaded(accounts[0])}); "
                                             f"health: http://{host}:{port}/healthz"))
    except (StoreError, RulesError, SettingsError) as e:
        fail(str(e))
    except OSError as e:
        fail(f"cannot listen on {host}:{port} ({e.strerror}): choose another --port")


async def _tune_process(app: object) -> None:
    """For the callback p99 (PERFORMANCE.md): move what lives as long as the process out of
    the cyclic GC's reach and collect young objects less often (a request makes hundreds),
    so collections stop stalling the event loop; and hand the GIL over sooner, so the SQLite
    writer thread, which gives it up for every statement, is not kept waiting 5 ms each time
    by a busy event loop (a convoy)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    sys.setswitchinterval(0.0001)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="processes sharing the port (SO_REUSEPORT); needs PostgreSQL or Redis")
@click.option("--no-scheduler", is_flag=True, help="do not run scheduled jobs in this server")
def serve(host: str, port: int, workers: int, no_scheduler: bool) -> None:
    """Start the HTTP server (and, unless --no-scheduler, the job scheduler)."""
    settings = load_settings()  # generate local secrets once, before any worker starts
    if workers == 1:
        _serve_one(host, port, not no_scheduler, False)
        return
    from .workers import serve_workers

    serve_workers(settings, host, port, workers, lambda p: _serve_one(
        host, p, not no_scheduler, True))


# The operator commands live with their features; each module adds itself to the group.
for _mod in (chat, jobs_cli, report, importer, dbcli, staff, card_cli, menu, backup, export,
             rotate, admins, wecom_cli, invites_cli):
    _mod.register(main)
