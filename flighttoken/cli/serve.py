"""``flighttoken serve``: run the HTTP service until stopped.

Heavy imports (the app, uvicorn) wait until the production-mode checks have passed.
"""

from __future__ import annotations

import argparse
import logging

from flighttoken.cli.common import fail
from flighttoken.settings import Settings


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
        return fail(f"cannot start: {exc}")
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
        return fail(f"cannot listen: {exc}")
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
        return fail(f"cannot start: {failure}" if failure else "cannot start (see log above)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--demo", action="store_true",
                       help="create demo devices and print their keys on stdout (development mode only)")
    serve.set_defaults(run=cmd_serve)
