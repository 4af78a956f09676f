"""Building journey API calls the way a kiosk and touchpoints make them."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device

TERMS = "FlightToken biometric boarding terms v1"


async def make_devices(pool) -> dict[str, str]:
    """One key of each kind: admin, kiosk, e-channel, lounge L1, gates 23 and 24."""
    specs = [("admin", DeviceKind.ADMIN, {}), ("kiosk", DeviceKind.KIOSK, {}),
             ("e_channel", DeviceKind.E_CHANNEL, {}), ("lounge", DeviceKind.LOUNGE, {"lounge_id": "L1"}),
             ("gate23", DeviceKind.GATE, {"gate": "23"}), ("gate24", DeviceKind.GATE, {"gate": "24"})]
    keys = {}
    async with pool.acquire() as conn:
        for name, kind, extra in specs:
            _, keys[name] = await add_device(conn, name=f"test-{name}", kind=kind, terminal="T1", **extra)
    return keys


async def create_flight(client: httpx.AsyncClient, number: str, gate: str, *, in_minutes: int = 60,
                        international: bool = True) -> dict[str, Any]:
    departure = (datetime.now(UTC) + timedelta(minutes=in_minutes)).replace(microsecond=0)
    r = await client.post("/v1/flights", json={"airline": "CX", "number": number, "gate": gate,
                                               "destination": "LAX", "scheduled_departure": departure.isoformat(),
                                               "international": international})
    assert r.status_code == 201, r.text
    return r.json()


def enrolment(photo: Path | bytes, flight_id: str, *, document_number: str, surname: str = "Chan",
              lounge: bool = True, seat: str | None = "42A", consent: bool = True) -> dict[str, Any]:
    image = photo if isinstance(photo, bytes) else photo.read_bytes()
    body: dict[str, Any] = {
        "document": {"type": "P", "number": document_number, "issuing_state": "HKG", "surname": surname,
                     "given_names": "Tai Man", "nationality": "HKG", "date_of_birth": "1990-01-01",
                     "expiry": "2031-01-01"},
        "booking": {"flight_id": flight_id, "booking_reference": "ABC" + document_number[-3:],
                    "seat": seat, "lounge_eligible": lounge},
        "captures": [base64.b64encode(image).decode()],
    }
    if consent:
        body["consent"] = {"terms_version": "v1", "terms_sha256": hashlib.sha256(TERMS.encode()).hexdigest(),
                           "consented_at": datetime.now(UTC).isoformat()}
    return body


def document_number(i: int) -> str:
    return f"K{i:08d}"


async def identify(client: httpx.AsyncClient, photo: Path | bytes) -> dict[str, Any]:
    image = photo if isinstance(photo, bytes) else photo.read_bytes()
    r = await client.post("/v1/identify", content=image, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    return r.json()




def boarding_pass(surname: str, given: str, pnr: str, number: str, day: date, *, carrier: str = "CX",
                  seat: str = "042A", to: str = "LAX") -> str:
    """A one-leg IATA BCBP (M1) as an airline prints it, mandatory items only."""
    name = f"{surname}/{given}".upper()[:20].ljust(20)
    return f"M1{name}E{pnr:<7}HKG{to}{carrier:<3}{number:0>4} {day.timetuple().tm_yday:03d}Y{seat}0001 100"


def departure_date(flight: dict[str, Any]) -> date:
    """The flight's date of departure as its pass prints it (the test service's airport zone is UTC)."""
    return datetime.fromisoformat(flight["scheduled_departure"]).astimezone(UTC).date()
