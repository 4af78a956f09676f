"""``python -m touchpoints``: one command per device, and the airport-day simulator.

    python -m touchpoints gate --key KEY photo.jpg          # prints the decision
    python -m touchpoints kiosk --key KEY --flight ID ... capture.jpg
    python -m touchpoints gate-board --key KEY --agent CX-4411 --reason face_not_recognised TOKEN_ID
    python -m touchpoints gate-board --key KEY --agent CX-4411 --reason device_fault --boarding-pass "$BCBP"
    python -m touchpoints bag-drop --key KEY --bags 2 photo.jpg
    python -m touchpoints late-enrol --key E_SECURITY_GATE_KEY --boarding-pass "$BCBP" ... --chip-photo dg2.jpg c.jpg
    python -m touchpoints simulate --flights 4 --passengers 300 --database-url ...

The service address comes from ``--url`` or ``TOUCHPOINT_URL``, the key from ``--key`` or
``TOUCHPOINT_KEY`` (not ``FLIGHTTOKEN_*``: the service refuses unknown variables with that prefix).
Exit status: 0 proceed / enrolled, 1 refer, 2 usage, 3 the service refused or could not be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from datetime import date
from pathlib import Path

import msgspec

from touchpoints.clients import (
    BagDropClient,
    EChannelClient,
    Enrols,
    ESecurityGateClient,
    GateClient,
    IdentifyClient,
    KioskClient,
    LoungeClient,
)
from touchpoints.models import (
    MANUAL_BOARDING_REASONS,
    Booking,
    Consent,
    Decision,
    EnrolmentRequest,
    TravelDocument,
)
from touchpoints.transport import ApiError, TouchpointError

EXIT_PROCEED, EXIT_REFER, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3
DEFAULT_URL = "http://127.0.0.1:8000"
IDENTIFY_COMMANDS: dict[str, type[IdentifyClient]] = {
    "bag-drop": BagDropClient, "e-security-gate": ESecurityGateClient, "e-channel": EChannelClient,
    "lounge": LoungeClient, "gate": GateClient,
}
ENROL_COMMANDS: dict[str, type[Enrols]] = {"kiosk": KioskClient, "late-enrol": ESecurityGateClient}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("TOUCHPOINT_URL", DEFAULT_URL),
                        help="service address (env TOUCHPOINT_URL; default %(default)s)")
    parser.add_argument("--key", default=os.environ.get("TOUCHPOINT_KEY"),
                        help="this device's API key (env TOUCHPOINT_KEY)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per attempt")
    parser.add_argument("--json", action="store_true", help="print the response as JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m touchpoints", description=(__doc__ or "").partition("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, client in IDENTIFY_COMMANDS.items():
        p = sub.add_parser(name, help=f"identify at a{'n' if name[0] == 'e' else ''} {name}: "
                                      f"{client.__doc__.splitlines()[0] if client.__doc__ else ''}")
        _common(p)
        p.add_argument("photo", type=Path, help="camera frame (JPEG or PNG)")
        p.add_argument("--boarding-pass", help="the boarding pass's barcode text (IATA BCBP): verify the face 1:1 "
                                                "against the token it names")
        if client is BagDropClient:
            p.add_argument("--bags", type=int, help="bags the passenger is dropping (0-9)")
    _enrol_arguments(sub.add_parser("kiosk", help="enrol a passenger at a check-in kiosk"), late=False)
    _enrol_arguments(sub.add_parser("late-enrol", help="enrol a passenger at an e-Security Gate (boarding pass "
                                                       "and chip photo required)"), late=True)

    b = sub.add_parser("gate-board", help="a gate agent boards a passenger by hand after checking the document")
    _common(b)
    b.add_argument("token_id", type=uuid.UUID, nargs="?", help="the passenger's token id (or --boarding-pass)")
    b.add_argument("--boarding-pass", help="the boarding pass's barcode text (IATA BCBP) instead of a token id")
    b.add_argument("--agent", required=True, help="the agent's staff id")
    b.add_argument("--reason", required=True, choices=sorted(MANUAL_BOARDING_REASONS), help="why by hand")

    s = sub.add_parser("simulate", help="run an airport day against a service and write its report")
    from touchpoints.simulator.command import add_arguments

    add_arguments(s)
    return parser


def _enrol_arguments(k: argparse.ArgumentParser, *, late: bool) -> None:
    """A kiosk sends the airline's booking; a late enrolment the boarding pass in its place."""
    _common(k)
    k.add_argument("captures", type=Path, nargs="+", help="one to five live captures")
    if late:
        k.add_argument("--boarding-pass", required=True,
                       help="the boarding pass's barcode text (IATA BCBP): flight, booking reference and seat")
    else:
        k.add_argument("--flight", required=True, type=uuid.UUID, help="flight id")
        k.add_argument("--booking-reference", required=True)
        k.add_argument("--seat")
        k.add_argument("--lounge", action="store_true", help="the passenger may use the lounge")
    k.add_argument("--document-type", default="P")
    k.add_argument("--document-number", required=True)
    k.add_argument("--issuing-state", required=True, help="ICAO code, e.g. HKG")
    k.add_argument("--nationality", help="ICAO code (default: the issuing state)")
    k.add_argument("--surname", required=True)
    k.add_argument("--given-names", default="")
    k.add_argument("--date-of-birth", required=True, type=date.fromisoformat)
    k.add_argument("--expiry", required=True, type=date.fromisoformat)
    k.add_argument("--chip-photo", type=Path, help="the document chip's face image (DG2)")
    k.add_argument("--terms-file", type=Path, required=True, help="the terms text the passenger accepted")
    k.add_argument("--terms-version", required=True)


def _show_decision(d: Decision, as_json: bool) -> int:
    if as_json:
        print(msgspec.json.encode(d).decode())
    else:
        line = f"{d.decision.upper():<8} {d.reason}"
        if d.passenger is not None:
            line += f"  {d.passenger.name}  seat {d.passenger.seat or '-'}  {d.passenger.flight}"
        print(line)
    return EXIT_PROCEED if d.proceed else EXIT_REFER


async def _identify(args: argparse.Namespace) -> int:
    async with IDENTIFY_COMMANDS[args.command](args.url, args.key, timeout=args.timeout) as client:
        image = args.photo.read_bytes()
        content_type = "image/png" if image[:4] == b"\x89PNG" else "image/jpeg"
        if isinstance(client, BagDropClient):
            return _show_decision(await client.identify(image, content_type=content_type, bags=args.bags,
                                                        boarding_pass=args.boarding_pass), args.json)
        return _show_decision(await client.identify(image, content_type=content_type,
                                                    boarding_pass=args.boarding_pass), args.json)


async def _enrol(args: argparse.Namespace) -> int:
    if len(args.captures) > 5:
        raise SystemExit(f"python -m touchpoints {args.command}: at most five captures")
    late = args.command == "late-enrol"
    request = EnrolmentRequest(
        document=TravelDocument(type=args.document_type, number=args.document_number,
                                issuing_state=args.issuing_state, surname=args.surname,
                                given_names=args.given_names, nationality=args.nationality or args.issuing_state,
                                date_of_birth=args.date_of_birth, expiry=args.expiry),
        booking=None if late else Booking(flight_id=args.flight, booking_reference=args.booking_reference,
                                          seat=args.seat, lounge_eligible=args.lounge),
        boarding_pass=args.boarding_pass if late else None,
        captures=[p.read_bytes() for p in args.captures],
        consent=Consent.accepted(args.terms_file.read_text(), args.terms_version),
        chip_photo=args.chip_photo.read_bytes() if args.chip_photo else None)
    async with ENROL_COMMANDS[args.command](args.url, args.key, timeout=args.timeout) as device:
        result = await device.enrol(request)
    if args.json:
        print(msgspec.json.encode(result).decode())
    else:
        print(f"{'ENROLLED' if result.created else 'ALREADY ENROLLED'}  token {result.token_id}  "
              f"state {result.state}")
    return EXIT_PROCEED


async def _board_manually(args: argparse.Namespace) -> int:
    async with GateClient(args.url, args.key, timeout=args.timeout) as gate:
        done = await gate.board_manually(args.token_id, args.agent, args.reason, boarding_pass=args.boarding_pass)
    if args.json:
        print(msgspec.json.encode(done).decode())
    else:
        who = f"  {done.passenger.name}  seat {done.passenger.seat or '-'}  {done.passenger.flight}" \
            if done.passenger else ""
        print(f"BOARDED  by hand ({done.reason_code}, agent {done.agent_id}){who}")
    return EXIT_PROCEED


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "simulate":
        from touchpoints.simulator.command import run_command

        return run_command(args)
    if not args.key:
        print("python -m touchpoints: give the device's key with --key or TOUCHPOINT_KEY", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "gate-board" and (args.token_id is None) == (args.boarding_pass is None):
        print("python -m touchpoints gate-board: name the passenger once: TOKEN_ID or --boarding-pass",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.command in ENROL_COMMANDS:
            return asyncio.run(_enrol(args))
        return asyncio.run(_board_manually(args) if args.command == "gate-board" else _identify(args))
    except OSError as exc:
        print(f"python -m touchpoints: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ApiError as exc:
        detail = f" ({', '.join(exc.problem.reasons)})" if exc.problem.reasons else ""
        print(f"ERROR {exc.status} {exc.code}: {exc.problem.detail}{detail}", file=sys.stderr)
        return EXIT_ERROR
    except TouchpointError as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return EXIT_ERROR
