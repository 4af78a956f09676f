"""``flighttoken`` command line: serve, migrate, and operator tools.

Start-up problems print one line saying what to fix and exit with status 2; no traceback wall.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from flighttoken.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    import asyncpg

EXIT_CONFIG = 2


def _fail(message: str) -> int:
    print(f"flighttoken: {message}", file=sys.stderr)
    return EXIT_CONFIG


class _DropKnownStartupTraceback(logging.Filter):
    """Uvicorn logs the full traceback of a failed lifespan; ours are explained in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "StartupError" not in record.getMessage()


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from flighttoken.production import ProductionModeError, check_start

    try:
        # Also checked at start-up (lifecycle.py); here first, so a refusal comes before the heavy imports.
        check_start(settings, demo=args.demo)
    except ProductionModeError as exc:
        return _fail(f"cannot start: {exc}")
    from flighttoken.app import create_app
    from flighttoken.listeners import server_for, sockets_for
    from flighttoken.logs import configure_logging

    configure_logging(settings.logging.log_format, settings.logging.log_level)
    logging.getLogger("uvicorn.error").addFilter(_DropKnownStartupTraceback())
    app = create_app(settings, demo=args.demo)
    # uvloop and httptools, not asyncio's loop and h11: in a saturated airport day they took the
    # event loop's CPU per request from 4.7 to 3.2 ms (ops/README.md, section 6).
    server = server_for(app, access_log=False, timeout_graceful_shutdown=10, timeout_keep_alive=5,
                        loop="uvloop", http="httptools")
    try:
        sockets = sockets_for(settings)
    except OSError as exc:
        return _fail(f"cannot listen: {exc}")
    try:
        server.run(sockets=sockets)
    except SystemExit:
        if server.started:
            raise
        # uvicorn exits with status 3 after a failed lifespan; say why in one line instead.
    except KeyboardInterrupt:
        # uvicorn re-raises Ctrl-C after its graceful shutdown (the embedded server is stopped by
        # then); exit as a shell expects from an interrupted program, without a traceback.
        return 130
    if not server.started:
        failure = app.state.services.startup_error
        return _fail(f"cannot start: {failure}" if failure else "cannot start (see log above)")
    return 0


@contextlib.asynccontextmanager
async def cli_database(settings: Settings) -> AsyncIterator[tuple[asyncpg.Pool, list[str]]]:
    """A migrated pool (and the migrations just applied) for one-off commands; the embedded server is
    started and stopped around it when there is no DATABASE_URL."""
    from flighttoken.db.embedded import EmbeddedPostgres
    from flighttoken.db.keystore import KeyStore
    from flighttoken.db.migrate import apply_migrations
    from flighttoken.db.pool import create_pool
    from flighttoken.executor import run_blocking

    embedded = None
    dsn = settings.database.database_url
    if not dsn:
        embedded = EmbeddedPostgres(settings.database.data_dir)
        dsn = await run_blocking(embedded.start)
    try:
        pool = await create_pool(dsn, settings)
        try:
            # As at start-up: the key store first, since migration 0006 moves the data keys into it.
            keystore = await KeyStore.open(dsn, settings)
            try:
                async with pool.acquire() as conn:
                    applied = await apply_migrations(conn, hooks=keystore.service_migration_hooks())
            finally:
                await keystore.close()
            yield pool, applied
        finally:
            await pool.close()
    finally:
        if embedded is not None:
            await run_blocking(embedded.stop)


async def _migrate(settings: Settings) -> list[str]:
    async with cli_database(settings) as (_, applied):
        return applied


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from flighttoken.db.embedded import EmbeddedDatabaseError
    from flighttoken.db.keystore import KeyStoreError
    from flighttoken.db.migrate import MigrationError
    from flighttoken.db.pool import DatabaseUnreachable

    try:
        applied = asyncio.run(_migrate(settings))
    except (EmbeddedDatabaseError, DatabaseUnreachable, KeyStoreError, MigrationError) as exc:
        return _fail(f"migrate failed: {exc}")
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


def cmd_faces_check(settings: Settings, args: argparse.Namespace) -> int:
    from flighttoken.faces.cli import check_images

    return check_images(args.images, settings)


def build_parser() -> argparse.ArgumentParser:
    from flighttoken.devices.cli import add_arguments as add_device_arguments
    from flighttoken.devices.cli import run_add as run_add_device

    parser = argparse.ArgumentParser(prog="flighttoken", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--demo", action="store_true",
                       help="create demo devices and print their keys on stdout (development mode only)")
    serve.set_defaults(run=cmd_serve)
    sub.add_parser("migrate", help="apply database migrations and exit").set_defaults(run=cmd_migrate)
    faces = sub.add_parser("faces", help="face engine tools").add_subparsers(dest="faces_command", required=True)
    check = faces.add_parser("check", help="print detection, quality and template facts for images")
    check.add_argument("images", nargs="+")
    check.set_defaults(run=cmd_faces_check)
    devices = sub.add_parser("devices", help="device keys").add_subparsers(dest="devices_command", required=True)
    add = devices.add_parser("add", help="create a device and print its API key (shown once)")
    add_device_arguments(add)
    add.set_defaults(run=run_add_device)
    from flighttoken.privacy.rotation import add_arguments as add_key_commands

    add_key_commands(sub.add_parser("keys", help="master keys").add_subparsers(dest="keys_command", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        return _fail(f"bad setting: {exc}")
    if args.command != "serve":
        from flighttoken.logs import configure_logging

        # One-off commands print their answer on stdout; only problems go to the log.
        configure_logging("console", "warning")
    return args.run(settings, args)
