"""Passengers for the operations tests: LFW people enrolled at the kiosk and, when asked, cleared at
the e-channel with another photo. LFW is news photography, so a person whose capture a touchpoint
refuses (second face, turned head) is skipped for the next one, as a real passenger would retry."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.testing import identities
from tests.support import journey as j
from tests.support.world import Passenger


async def add_key(svc, kind: DeviceKind, **extra: str) -> str:
    async with svc.services.db().acquire() as conn:
        _, key = await add_device(conn, name=f"test-{kind.value}-{uuid.uuid4().hex[:6]}", kind=kind, **extra)
    return key


def candidates(faces_dir: str, skip: int = 0) -> Iterator[tuple[str, list[Path]]]:
    """People with several photos (better odds of a usable probe), in a stable order."""
    yield from identities(faces_dir, min_photos=4)[skip:]


async def enrol(kiosk: httpx.AsyncClient, people: Iterator[tuple[str, list[Path]]], flight_id: str,
                doc_base: int, e_channel: httpx.AsyncClient | None = None) -> Passenger:
    """Enrol the next person who enrols (and, with ``e_channel``, clears immigration)."""
    for i, (name, photos) in enumerate(people):
        document = j.document_number(doc_base + i)
        r = await kiosk.post("/v1/enrolments", json=j.enrolment(photos[0], flight_id, document_number=document,
                                                                surname=name.split("_")[-1]))
        if r.status_code != 201:
            continue
        token_id = r.json()["token_id"]
        if e_channel is None:
            return Passenger(name=name, document=document, token_id=token_id, probe=photos[1],
                             booking_reference="ABC" + document[-3:])
        for probe in photos[1:4]:
            d = await j.identify(e_channel, probe)
            if d["decision"] == "proceed":
                assert d["token_id"] == token_id
                return Passenger(name=name, document=document, token_id=token_id, probe=probe,
                                 booking_reference="ABC" + document[-3:])
    raise AssertionError("ran out of LFW people who enrol and clear")
