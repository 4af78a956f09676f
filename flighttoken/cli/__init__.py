"""``flighttoken`` command line: serve, migrate, and operator tools.

Start-up problems print one line saying what to fix and exit with status 2; no traceback wall.
Each command group is a module of this package with a ``register(subparsers)``; this one only
wires them together (they never import it back).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from flighttoken.cli import devices, faces, keys, migrate, serve
from flighttoken.cli.common import fail
from flighttoken.settings import SettingsError, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flighttoken", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (serve, migrate, faces, devices, keys):
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        return fail(f"bad setting: {exc}")
    if args.command != "serve":
        from flighttoken.logs import configure_logging

        # One-off commands print their answer on stdout; only problems go to the log.
        configure_logging("console", "warning")
    return args.run(settings, args)
