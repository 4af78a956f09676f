"""Start-up and shutdown, in one place and in a fixed order.

Start: production-mode checks → embedded PostgreSQL (only without DATABASE_URL) → pool → key
store → master key → migrations → document MAC key → face models → galleries → background tasks
(privacy sweeper, DCS deliverer). Stop: the reverse.
Any failure we can explain becomes a :class:`StartupError` whose one-line message tells the
operator what to fix; the CLI prints it without a traceback.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator

import asyncpg
import structlog
from litestar import Litestar

from flighttoken import executor
from flighttoken.db.keystore import KeyStore
from flighttoken.db.migrate import Hook
from flighttoken.db.startup import DATABASE_ERRORS, open_databases
from flighttoken.dcs.deliverer import start_deliverer
from flighttoken.devices.registry import seed_demo_devices
from flighttoken.galleries.loader import rebuild_galleries
from flighttoken.privacy import document_keys
from flighttoken.privacy.sweeper import start_sweeper
from flighttoken.privacy.vault import MasterKeyError, TemplateVault, load_master_key
from flighttoken.production import ProductionModeError, check_keystore_cluster, check_start
from flighttoken.services import Engine, Services
from flighttoken.sync.listener import SyncListener
from flighttoken.watchlist import startup as watchlist_startup

log = structlog.get_logger(__name__)


class StartupError(Exception):
    """Start-up cannot continue; ``str(exc)`` is the one line to show the operator."""


def _load_engine(services: Services) -> Engine:
    from flighttoken.faces.engine import FaceEngine
    from flighttoken.faces.errors import ModelLoadError

    try:
        return FaceEngine.load(services.settings)
    except ModelLoadError as exc:
        raise StartupError(str(exc)) from None


@contextlib.asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    services: Services = app.state.services
    executor.configure()
    async with contextlib.AsyncExitStack() as stack:
        try:
            await _start(services, stack)
        except StartupError as exc:
            services.startup_error = str(exc)
            log.error("startup_failed", reason=str(exc))
            raise
        log.info("service_ready")
        base = f"http://{services.settings.http.host}:{services.settings.http.port}"
        print(f"FlightToken ready on {base}  (API docs: {base}/schema/swagger)", file=sys.stderr, flush=True)
        if services.settings.http.authority_port:
            print(f"Authority API on http://{services.settings.http.authority_host}:{services.settings.http.authority_port}",
                  file=sys.stderr, flush=True)
        try:
            yield
        finally:
            services.shutting_down = True
            log.info("service_stopping")


async def _start(services: Services, stack: contextlib.AsyncExitStack) -> None:
    settings = services.settings
    try:
        check_start(settings, demo=services.demo)
    except ProductionModeError as exc:
        raise StartupError(str(exc)) from None

    # Once both databases are open, before the service migrations (0010 needs the master key).
    async def prepare(pool: asyncpg.Pool, keystore: KeyStore) -> dict[int, Hook]:
        await check_keystore_cluster(settings, pool, keystore.pool)
        services.vault = TemplateVault(load_master_key(settings), keystore)
        return document_keys.migration_hooks(keystore, services.vault.master)

    try:
        databases = await stack.enter_async_context(open_databases(settings, prepare))
        services.dsn, services.pool = databases.dsn, databases.pool
        services.document_keys = await document_keys.load(databases.keystore, services.vault.master)
        await document_keys.bind(services.pool, services.document_keys)
    except (*DATABASE_ERRORS, MasterKeyError, document_keys.DocumentKeyError, ProductionModeError) as exc:
        raise StartupError(str(exc)) from None

    if services.engine is None:
        services.engine = await executor.run_blocking(_load_engine, services)
    services.models_loaded = True

    await rebuild_galleries(services)
    # Started after the rebuild: its first act is a reconcile, which covers changes made by other
    # instances between the rebuild's query and the LISTEN.
    services.sync = SyncListener(services, settings.galleries.reconcile_interval_s)
    await services.sync.start()
    stack.push_async_callback(services.sync.stop)
    await watchlist_startup.start(services, stack)
    services.galleries_loaded = True
    # Purges due flights and finishes purges a crash interrupted; stopped before the pool closes.
    await start_sweeper(services, stack)
    # Posts the DCS outbox to airlines; events queued while no instance ran are delivered now.
    await start_deliverer(services.db(), services.vault.master, settings.dcs, stack)
    if services.demo:
        await _print_demo_keys(services)


async def _print_demo_keys(services: Services) -> None:
    async with services.db().acquire() as conn:
        devices = await seed_demo_devices(conn)
    lines = [f"  {d.kind.value:<10} {d.name:<16} {key}" for d, key in devices]
    # On stdout, for the operator's terminal: stderr is the log stream (JSON lines a collector keeps),
    # and a key must never travel through it or through structlog.
    print("Demo device keys (send as 'Authorization: Bearer <key>'):\n" + "\n".join(lines),
          file=sys.stdout, flush=True)
