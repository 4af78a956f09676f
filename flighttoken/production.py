"""Production mode: development conveniences never reach an airport.

``make run`` (embedded database, ``--demo``) creates a master key in the data dir, seeds demo
devices whose keys it prints, and leaves /metrics open. Harmless on a laptop, each is a finding in
production. Production mode (``FLIGHTTOKEN_MODE``; implied by ``DATABASE_URL``) refuses to start
with any of them, before anything connects, in one line that names the setting to fix.
"""

from __future__ import annotations

import asyncpg
import structlog

from flighttoken.db.queries import cluster as cluster_q
from flighttoken.settings import Settings

log = structlog.get_logger(__name__)


class ProductionModeError(Exception):
    """A development default in production mode; ``str(exc)`` is the one line for the operator."""


def _mode(settings: Settings) -> str:
    return "production mode (FLIGHTTOKEN_MODE=production)" if settings.mode else \
        "production mode (implied by DATABASE_URL)"


def master_key_problem(settings: Settings) -> str | None:
    if settings.privacy.master_key or settings.privacy.master_key_file:
        return None
    return (f"FLIGHTTOKEN_MASTER_KEY_FILE: {_mode(settings)} needs a master key and never creates a development "
            "one; make one with `flighttoken keys generate` and point FLIGHTTOKEN_MASTER_KEY_FILE at it")


def metrics_problem(settings: Settings) -> str | None:
    """Why /metrics would answer anyone, or None. The one place that decides what protects it: another
    protection (e.g. a listener of its own) is accepted here."""
    if settings.operations.metrics_token:
        return None
    return (f"FLIGHTTOKEN_METRICS_TOKEN: {_mode(settings)} does not serve /metrics unprotected; set a token "
            "(e.g. `openssl rand -base64 32`) and give it to the scraper as its bearer token")


def check_start(settings: Settings, *, demo: bool) -> None:
    """Refuse a production start that carries a development default. Needs no database."""
    if not settings.production:
        return
    if demo:
        raise ProductionModeError(f"--demo: {_mode(settings)} creates no demo devices; add devices with "
                                  "`flighttoken devices add` (FLIGHTTOKEN_MODE=development to try things out)")
    for problem in (master_key_problem(settings), metrics_problem(settings)):
        if problem:
            raise ProductionModeError(problem)
    if settings.database.keystore_same_cluster == "refuse" and not settings.database.keystore_url:
        # The default key store is a sibling database on the service database's server: refused
        # before it is created.
        raise ProductionModeError(_same_cluster_message("the default key store, <service db>_keys"))


def _same_cluster_message(where: str) -> str:
    return (f"FLIGHTTOKEN_KEYSTORE_URL: the key store is on the service database's cluster ({where}), so that "
            "cluster's backups and WAL archives hold the data keys with the templates; point "
            "FLIGHTTOKEN_KEYSTORE_URL at another cluster")


def same_cluster(a: cluster_q.ClusterIdentity, b: cluster_q.ClusterIdentity) -> bool:
    # The system identifier settles it when both are known (any address may reach a cluster);
    # otherwise the server address and port the two connections arrived at.
    if a.system_identifier is not None and b.system_identifier is not None:
        return a.system_identifier == b.system_identifier
    return a.address is not None and a.address == b.address


async def check_keystore_cluster(settings: Settings, service: asyncpg.Pool, keystore: asyncpg.Pool) -> None:
    """Warn, or refuse (FLIGHTTOKEN_KEYSTORE_SAME_CLUSTER=refuse), when the key store shares the service
    database's cluster: its physical backups and WAL archives then hold the data keys next to the
    templates, so restoring one brings purged flights back."""
    if not settings.production:
        return
    ours, keys = await cluster_q.identity(service), await cluster_q.identity(keystore)
    if not same_cluster(ours, keys):
        return
    message = _same_cluster_message(ours.address or "a Unix socket")
    if settings.database.keystore_same_cluster == "refuse":
        raise ProductionModeError(message)
    log.warning("keystore_same_cluster", detail=message,
                hint="FLIGHTTOKEN_KEYSTORE_SAME_CLUSTER=refuse makes this stop start-up")
