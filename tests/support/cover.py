"""A service where every passenger who would proceed at the e-channel is referred at random
(``secondary_referral_share`` 1: deterministic), with one wanted person on the watchlist: the
world in which a watchlist hit must look exactly like a random secondary referral (issue 17).

Two flights of one airline, same gate and time: the wanted person travels on one, a passenger no
list holds on the other, so each flight's figures carry exactly one referral of each cause.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from flighttoken.testing import RunningService
from tests.support import journey as j
from tests.watchlist.helpers import Subject, extra_keys, pick_subject, subject_body

# What differs between any two passengers or flights whatever happened to them: never compared.
PER_PERSON = frozenset({"id", "token_id", "flight_id", "flight", "surname", "given_names", "booking_reference",
                        "seat", "document_last4", "enrolled_at", "scheduled_departure", "at", "event_id"})


@dataclass
class Traveller:
    subject: Subject
    flight: dict[str, Any]
    token_id: str


@dataclass
class CoverWorld:
    svc: RunningService
    keys: dict[str, str]
    wanted: Traveller
    """On the watchlist: referred by a hit."""
    clean: Traveller
    """On no list: referred at random."""
    subject_id: str


@asynccontextmanager
async def cover_world(make_service, face_engine) -> AsyncIterator[CoverWorld]:
    settings = make_service.settings(secondary_referral_share=1.0)
    thresholds = settings.watchlist.watchlist_threshold, settings.decisions.e_channel_threshold
    wanted = pick_subject(face_engine, settings.faces_dir, *thresholds)
    clean = pick_subject(face_engine, settings.faces_dir, *thresholds, skip=1)
    async with make_service(settings, authority=True) as svc:
        pool = svc.services.db()
        keys = {**await j.make_devices(pool), **await extra_keys(pool)}
        async with svc.client(keys["admin"]) as admin:
            flights = [await j.create_flight(admin, n, "23") for n in ("884", "886")]
        async with svc.authority_client(keys["authority"]) as authority:
            r = await authority.post("/v1/watchlist/subjects", json=subject_body([wanted.watchlist_photo]))
            assert r.status_code == 201, r.text
            subject_id = r.json()["id"]
        travellers = []
        async with svc.client(keys["kiosk"]) as kiosk:
            for i, (s, flight) in enumerate(zip((wanted, clean), flights, strict=True)):
                r = await kiosk.post("/v1/enrolments", json=j.enrolment(s.enrol_photo, flight["id"],
                                                                        document_number=j.document_number(i)))
                assert r.status_code == 201, r.text
                travellers.append(Traveller(s, flight, r.json()["token_id"]))
        yield CoverWorld(svc, keys, travellers[0], travellers[1], subject_id)


def strip(doc: dict[str, Any], drop: frozenset[str] = PER_PERSON) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in drop}


def header_names(response) -> set[str]:
    return set(response.headers.keys()) - {"date", "x-request-id", "content-length"}
