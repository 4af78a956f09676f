"""``flighttoken devices add``: create a device key from the command line (shown once)."""

from __future__ import annotations

import argparse
import asyncio

from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.errors import ServiceError
from flighttoken.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True)
    parser.add_argument("--kind", required=True, choices=[k.value for k in DeviceKind])
    parser.add_argument("--terminal")
    parser.add_argument("--gate", help="gate readers: the gate they stand at")
    parser.add_argument("--lounge", dest="lounge_id", help="lounge readers: the lounge id")
    parser.add_argument("--airline", help="airline_ops keys: the airline they serve")


async def _add(settings: Settings, args: argparse.Namespace) -> str:
    from flighttoken.cli import cli_database

    async with cli_database(settings) as (pool, _), pool.acquire() as conn:
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
