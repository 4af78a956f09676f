"""``flighttoken migrate``: apply the database migrations (key store first) and exit."""

from __future__ import annotations

import argparse
import asyncio

from flighttoken.cli.common import fail
from flighttoken.db.startup import DATABASE_ERRORS, open_databases
from flighttoken.settings import Settings


async def _migrate(settings: Settings) -> list[str]:
    async with open_databases(settings) as databases:
        return databases.applied


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    try:
        applied = asyncio.run(_migrate(settings))
    except DATABASE_ERRORS as exc:
        return fail(f"migrate failed: {exc}")
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sub.add_parser("migrate", help="apply database migrations and exit").set_defaults(run=cmd_migrate)
