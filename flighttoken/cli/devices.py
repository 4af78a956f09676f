"""``flighttoken devices add``: create a device key from the command line (shown once)."""

from __future__ import annotations

import argparse
import asyncio

from flighttoken.db.startup import open_databases
from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.errors import ServiceError
from flighttoken.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    devices = sub.add_parser("devices", help="device keys").add_subparsers(dest="devices_command", required=True)
    add = devices.add_parser("add", help="create a device and print its API key (shown once)")
    add.add_argument("--name", required=True)
    add.add_argument("--kind", required=True, choices=[k.value for k in DeviceKind])
    add.add_argument("--terminal")
    add.add_argument("--gate", help="gate readers: the gate they stand at")
    add.add_argument("--lounge", dest="lounge_id", help="lounge readers: the lounge id")
    add.add_argument("--airline", help="airline_ops keys: the airline they serve")
    add.set_defaults(run=run_add)


async def _add(settings: Settings, args: argparse.Namespace) -> str:
    async with open_databases(settings) as databases, databases.pool.acquire() as conn:
        device, key = await add_device(conn, name=args.name, kind=DeviceKind(args.kind), terminal=args.terminal,
                                       gate=args.gate, lounge_id=args.lounge_id, airline=args.airline)
    return f"{device.kind.value} {device.name} ({device.id})\nAPI key (shown once): {key}"


def run_add(settings: Settings, args: argparse.Namespace) -> int:
    try:
        print(asyncio.run(_add(settings, args)))
    except ServiceError as exc:
        print(f"flighttoken: {exc.detail}")
        return 2
    return 0
