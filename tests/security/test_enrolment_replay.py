"""Idempotency-Key on the kiosk's POSTs (issue 16): a retried enrolment is answered, not executed again.

Over real HTTP against the real service, real PostgreSQL and the real face models. Concurrency is
forced with hooks (the enrolment held on an event until the retry has met the key), never a sleep.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from flighttoken.errors import Unavailable
from flighttoken.journey import enrolment, idempotency
from flighttoken.privacy.sweeper import Sweeper
from flighttoken.settings import Settings
from flighttoken.testing import RunningService, identities, run_service
from tests.support import journey as j
from tests.support.world import World

KEY = "Idempotency-Key"



@dataclass(kw_only=True)
class ReplayWorld(World):
    settings: Settings
    flight_id: str
    people: list[list[Path]]
    second_kiosk: str


@pytest.fixture(scope="module")
async def world(make_service):
    settings = make_service.settings()
    async with make_service(settings) as svc:
        keys = await j.make_devices(svc.services.db())
        async with svc.services.db().acquire() as conn:
            from flighttoken.devices.model import DeviceKind
            from flighttoken.devices.registry import add_device

            _, second_kiosk = await add_device(conn, name="test-kiosk-2", kind=DeviceKind.KIOSK, terminal="T1")
        async with svc.client(keys["admin"]) as admin:
            flight = await j.create_flight(admin, "884", "23")
        people = [photos for _, photos in identities(settings.faces_dir, min_photos=3)[:20]]
        yield ReplayWorld(svc=svc, settings=settings, keys=keys, flight_id=flight["id"], people=people,
                          second_kiosk=second_kiosk)


def _body(world: ReplayWorld, person: int, document: str, **extra) -> bytes:
    """The exact bytes a kiosk sends (a retry sends these again)."""
    body = j.enrolment(world.people[person][0], world.flight_id, document_number=document)
    body.update(extra)
    return json.dumps(body).encode()


async def _post(world: ReplayWorld, content: bytes, key: str | None, *, device: str = "kiosk",
                path: str = "/v1/enrolments", svc: RunningService | None = None):
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers[KEY] = key
    async with (svc or world.svc).client(world.keys.get(device, device)) as kiosk:
        return await kiosk.post(path, content=content, headers=headers)


async def _writes(world: ReplayWorld, document: str) -> dict[str, int]:
    """What an enrolment of ``document`` wrote: consent rows, tokens and enrol audit events."""
    pool = world.svc.services.db()
    doc_key = world.svc.services.document_keys.of("HKG", "P", document)
    return {
        "consents": await pool.fetchval("SELECT count(*) FROM consents WHERE document_key = $1", doc_key),
        "tokens": await pool.fetchval("SELECT count(*) FROM tokens WHERE document_key = $1", doc_key),
        "audits": await pool.fetchval(
            "SELECT count(*) FROM audit_events a JOIN tokens t ON t.id = a.token_id"
            " WHERE t.document_key = $1 AND a.action = 'token.enrol'", doc_key),
    }


async def _refusal_audits(world: ReplayWorld, reason: str) -> int:
    return await world.svc.services.db().fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'token.enrol' AND outcome = 'refused'"
        " AND detail->>'reason' = $1", reason)


async def _first_of(*events_or_tasks) -> None:
    """Until the first of these is set or done: what the test waits on instead of a sleep."""
    ours = [asyncio.ensure_future(e.wait()) for e in events_or_tasks if isinstance(e, asyncio.Event)]
    tasks = [t for t in events_or_tasks if not isinstance(t, asyncio.Event)]
    await asyncio.wait([*ours, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for w in ours:
        w.cancel()


@pytest.fixture
def held_enrolment(monkeypatch):
    """Holds every enrolment until ``release`` is set; counts how many began."""
    real = enrolment.enrol

    class Held:
        calls = 0
        entered = asyncio.Event()
        second_entered = asyncio.Event()
        """A second enrolment began: the key did not stop it (what must not happen)."""
        release = asyncio.Event()

    async def enrol(*args, **kwargs):
        Held.calls += 1
        (Held.entered if Held.calls == 1 else Held.second_entered).set()
        await Held.release.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(enrolment, "enrol", enrol)
    return Held


async def test_a_retried_enrolment_replays_the_first_answer_and_writes_nothing(world: ReplayWorld) -> None:
    content, key = _body(world, 0, "K10000001"), str(uuid.uuid4())
    first = await _post(world, content, key)
    assert first.status_code == 201, first.text
    again = await _post(world, content, key)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert await _writes(world, "K10000001") == {"consents": 1, "tokens": 1, "audits": 1}
    # Without a key the same body is a new enrolment attempt (today's behaviour): answered 200.
    plain = await _post(world, content, None)
    assert (plain.status_code, plain.json()["created"]) == (200, False)


async def test_a_key_reused_with_another_body_is_refused_and_writes_nothing(world: ReplayWorld) -> None:
    key = str(uuid.uuid4())
    first = await _post(world, _body(world, 1, "K10000002"), key)
    assert first.status_code == 201, first.text
    before = await _writes(world, "K10000002")
    other = json.loads(_body(world, 1, "K10000002"))
    other["booking"]["seat"] = "1A"
    r = await _post(world, json.dumps(other).encode(), key)
    assert (r.status_code, r.json()["code"]) == (422, "idempotency_key_reused")
    assert r.headers["content-type"].startswith("application/problem+json")
    # The same key on the other kiosk POST is another request too.
    opt_out = {"booking_reference": "ABC002", "document": {"type": "P", "number": "K10000002",
                                                           "issuing_state": "HKG"}}
    r = await _post(world, json.dumps(opt_out).encode(), key, path="/v1/opt-outs")
    assert (r.status_code, r.json()["code"]) == (422, "idempotency_key_reused")
    assert await _writes(world, "K10000002") == before
    token = await world.svc.services.db().fetchrow("SELECT seat, state FROM tokens WHERE id = $1",
                                                   uuid.UUID(first.json()["token_id"]))
    assert (token["seat"], token["state"]) == ("42A", "enrolled")


async def test_concurrent_retries_with_one_key_enrol_once(world: ReplayWorld, held_enrolment, monkeypatch) -> None:
    # The retry arrives while the first request is still enrolling (held on an event): it must not
    # enrol a second time, and gets the first request's answer once that is known.
    real_key_of, seen = idempotency.key_of, []
    retry_met_the_key = asyncio.Event()

    def key_of(request):
        seen.append(request)
        if len(seen) == 2:
            retry_met_the_key.set()
        return real_key_of(request)

    monkeypatch.setattr(idempotency, "key_of", key_of)
    content, key = _body(world, 2, "K10000003"), str(uuid.uuid4())
    first = asyncio.create_task(_post(world, content, key))
    await held_enrolment.entered.wait()
    retry = asyncio.create_task(_post(world, content, key))
    await _first_of(retry_met_the_key, held_enrolment.second_entered)
    held_enrolment.release.set()
    a, b = await asyncio.gather(first, retry)
    assert held_enrolment.calls == 1
    assert (a.status_code, b.status_code) == (201, 201) and a.json() == b.json()
    assert await _writes(world, "K10000003") == {"consents": 1, "tokens": 1, "audits": 1}


async def test_simultaneous_requests_with_one_key_enrol_once(world: ReplayWorld) -> None:
    content, key = _body(world, 3, "K10000004"), str(uuid.uuid4())
    answers = await asyncio.gather(*(_post(world, content, key) for _ in range(4)))
    assert {r.status_code for r in answers} == {201}
    assert len({r.text for r in answers}) == 1
    assert await _writes(world, "K10000004") == {"consents": 1, "tokens": 1, "audits": 1}


async def test_a_retry_on_another_instance_while_the_first_runs_is_told_to_retry_and_then_replayed(
        world: ReplayWorld, face_engine, held_enrolment) -> None:
    content, key = _body(world, 4, "K10000005"), str(uuid.uuid4())
    async with run_service(world.settings, engine=face_engine) as other:
        first = asyncio.create_task(_post(world, content, key))
        await held_enrolment.entered.wait()
        retry = asyncio.create_task(_post(world, content, key, svc=other))
        await _first_of(retry, held_enrolment.second_entered)
        held_enrolment.release.set()
        busy, answer = await retry, await first
        assert (busy.status_code, busy.json()["code"]) == (409, "idempotency_key_in_progress")
        assert busy.headers["retry-after"] == "1"
        replay = await _post(world, content, key, svc=other)
    assert held_enrolment.calls == 1
    assert answer.status_code == 201 and replay.status_code == 201 and replay.json() == answer.json()
    assert await _writes(world, "K10000005") == {"consents": 1, "tokens": 1, "audits": 1}


async def test_a_retried_refusal_is_replayed_without_a_second_audit(world: ReplayWorld) -> None:
    # A chip photo of someone else: a deterministic refusal, audited once.
    chip = base64.b64encode(world.people[6][0].read_bytes()).decode()
    content, key = _body(world, 5, "K10000006", chip_photo=chip), str(uuid.uuid4())
    first = await _post(world, content, key)
    assert (first.status_code, first.json()["code"]) == (422, "chip_photo_mismatch"), first.text
    audits = await _refusal_audits(world, "chip_photo_mismatch")
    again = await _post(world, content, key)
    assert again.status_code == 422 and again.json() == first.json()  # the first request's id included
    assert again.headers["content-type"].startswith("application/problem+json")
    assert await _refusal_audits(world, "chip_photo_mismatch") == audits


async def test_a_retry_after_a_busy_engine_is_executed_not_replayed(world: ReplayWorld, monkeypatch) -> None:
    real, calls = enrolment.enrol, []

    async def busy_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise Unavailable("the face engine is busy", code="engine_busy", headers={"Retry-After": "1"})
        return await real(*args, **kwargs)

    monkeypatch.setattr(enrolment, "enrol", busy_once)
    content, key = _body(world, 7, "K10000008"), str(uuid.uuid4())
    busy = await _post(world, content, key)
    assert (busy.status_code, busy.json()["code"]) == (503, "engine_busy")
    done = await _post(world, content, key)
    replay = await _post(world, content, key)
    assert done.status_code == 201 and replay.json() == done.json() and len(calls) == 2
    assert await _writes(world, "K10000008") == {"consents": 1, "tokens": 1, "audits": 1}


@pytest.mark.parametrize("headers", [
    [(KEY, "")], [(KEY, "k" * 256)], [(KEY, "caf\u00e9")], [(KEY, "a\tb")], [(KEY, "one"), (KEY, "two")],
], ids=["empty", "too_long", "not_ascii", "control_character", "two_headers"])
async def test_a_malformed_idempotency_key_is_refused_and_writes_nothing(world: ReplayWorld, headers) -> None:
    document = f"K2{abs(hash(str(headers))) % 10**7:07d}"
    content = _body(world, 8, document)
    async with world.svc.client(world.keys["kiosk"]) as kiosk:
        raw = [("Content-Type", "application/json"), *[(k, v.encode("utf-8")) for k, v in headers]]
        r = await kiosk.post("/v1/enrolments", content=content, headers=raw)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_idempotency_key"), r.text
    assert await _writes(world, document) == {"consents": 0, "tokens": 0, "audits": 0}


async def test_one_key_on_two_kiosks_is_two_requests(world: ReplayWorld) -> None:
    content, key = _body(world, 9, "K10000010"), "kiosk-day-0001"
    first = await _post(world, content, key)
    other = await _post(world, content, key, device=world.second_kiosk)
    assert first.status_code == 201 and (other.status_code, other.json()["created"]) == (200, False)
    assert other.headers.get("idempotent-replayed") is None


async def test_the_key_keeps_a_keyed_digest_never_the_body_and_expires_after_24_hours(world: ReplayWorld) -> None:
    pool = world.svc.services.db()
    content, key = _body(world, 10, "K10000011"), str(uuid.uuid4())
    first = await _post(world, content, key)
    assert first.status_code == 201
    row = await pool.fetchrow("SELECT * FROM idempotency_keys WHERE key = $1", key)
    # A MAC under the master key, which never enters the database, not a digest anyone can recompute.
    master = world.svc.services.vault.master
    assert (row["body_kek_id"], bytes(row["body_mac"])) == master.mac(b"idempotency-body", content)
    assert bytes(row["body_mac"]) != hashlib.sha256(content).digest()
    capture = json.loads(content)["captures"][0].encode()
    assert all(capture[:64] not in bytes(v) for v in row.values() if isinstance(v, bytes))
    assert json.loads(row["response"]) == first.json()

    # Past 24 h the key no longer replays, even before the sweeper has run...
    await pool.execute("UPDATE idempotency_keys SET created_at = now() - interval '24 hours 1 second'"
                       " WHERE key = $1", key)
    fresh = await _post(world, content, key)
    assert (fresh.status_code, fresh.json()["created"]) == (200, False)
    assert fresh.headers.get("idempotent-replayed") is None
    # ...and the sweeper deletes it; a younger key stays.
    await pool.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = $1", key)
    young = str(uuid.uuid4())
    assert (await _post(world, content, young)).status_code == 200
    report = await Sweeper(world.svc.services).sweep_once()
    assert report.idempotency_keys_expired == 1
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = $1", key) == 0
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = $1", young) == 1


async def test_a_retried_opt_out_replays_the_first_answer_and_audits_once(world: ReplayWorld) -> None:
    enrolled = await _post(world, _body(world, 11, "K10000012"), None)
    assert enrolled.status_code == 201
    body = json.dumps({"booking_reference": "ABC012", "flight_id": world.flight_id,
                       "document": {"type": "P", "number": "K10000012", "issuing_state": "HKG"}}).encode()
    key = str(uuid.uuid4())
    first = await _post(world, body, key, path="/v1/opt-outs")
    assert first.status_code == 200 and first.json()["tokens_revoked"] == 1, first.text
    again = await _post(world, body, key, path="/v1/opt-outs")
    assert again.status_code == 200 and again.json() == first.json()
    audits = await world.svc.services.db().fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'token.opt_out' AND token_id = $1",
        uuid.UUID(enrolled.json()["token_id"]))
    assert audits == 1
    # The opt-out body is little more than the document number: no unkeyed digest of it is kept.
    macs = await world.svc.services.db().fetch("SELECT body_mac FROM idempotency_keys WHERE key = $1", key)
    assert [bytes(m["body_mac"]) for m in macs] != [hashlib.sha256(body).digest()] and len(macs) == 1
