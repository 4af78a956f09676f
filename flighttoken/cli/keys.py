"""``flighttoken keys rotate`` and ``keys generate``: master key rotation (flighttoken/privacy/rotation.py)."""

from __future__ import annotations

import argparse
import asyncio

import asyncpg

from flighttoken.crypto.keys import generate_master_key
from flighttoken.db.keystore import KeyStore
from flighttoken.db.migrate import Hook
from flighttoken.db.startup import DATABASE_ERRORS, open_databases
from flighttoken.privacy import document_keys
from flighttoken.privacy.rotation import RotationReport, rotate
from flighttoken.privacy.vault import MasterKeyError, load_master_key
from flighttoken.settings import Settings


async def _rotate_command(settings: Settings) -> RotationReport:
    master = load_master_key(settings)

    # 0010 needs the master key on a database that still holds unkeyed document digests.
    async def prepare(pool: asyncpg.Pool, keystore: KeyStore) -> dict[int, Hook]:
        return document_keys.migration_hooks(keystore, master)

    async with open_databases(settings, prepare) as databases:
        return await rotate(databases.keystore, databases.pool, master)


def run_rotate(settings: Settings, args: argparse.Namespace) -> int:
    try:
        report = asyncio.run(_rotate_command(settings))
    except (MasterKeyError, *DATABASE_ERRORS) as exc:
        print(f"flighttoken: {exc}")
        return 2
    print(f"rewrapped {report.rewrapped} data keys under {report.current_kek}; "
          f"{report.already_current} already current; {report.unreadable} unreadable")
    if report.unreadable:
        hint = f" (wrapped under {', '.join(report.unknown_keks)})" if report.unknown_keks else ""
        print(f"flighttoken: {report.unreadable} data keys could not be rewrapped{hint}: put their master key "
              "back in the keyring, after the current one, and run again")
        return 1
    return 0


def run_generate(settings: Settings, args: argparse.Namespace) -> int:
    try:
        print(generate_master_key(args.id))
    except ValueError as exc:
        print(f"flighttoken: {exc}")
        return 2
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = sub.add_parser("keys", help="master keys").add_subparsers(dest="keys_command", required=True)
    rotate_p = keys.add_parser("rotate", help="rewrap every data key under the current (first) master key")
    rotate_p.set_defaults(run=run_rotate)
    generate = keys.add_parser("generate", help="print a new master keyring entry (put it first in the ring)")
    generate.add_argument("--id", help="key id (default: kek-<date>-<random>)")
    generate.set_defaults(run=run_generate)
