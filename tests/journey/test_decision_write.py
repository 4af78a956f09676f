"""The decision write (issue 4): one statement that moves the token, stamps a lounge entry, audits a
refusal that is evidence of misuse and appends the journey event — with the semantics the former
transaction had. Real PostgreSQL; the decisions are built directly (no face involved)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import cast

import asyncpg
import pytest

from flighttoken.db.migrate import apply_migrations
from flighttoken.db.pool import create_pool
from flighttoken.db.queries import flights as flight_q
from flighttoken.db.queries import journey as journey_q
from flighttoken.decisions.match import MatchOutcome
from flighttoken.devices.model import Device, DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.flights.model import Flight, FlightState
from flighttoken.flights.windows import window_start
from flighttoken.galleries.registry import GalleryRegistry
from flighttoken.journey.identify import conclude
from flighttoken.services import Services
from flighttoken.vocabulary import DecisionReason


@pytest.fixture(scope="module")
async def db(base_settings, database_url):
    settings = base_settings.replace(database_url=database_url)
    pool = await create_pool(database_url, settings)
    async with pool.acquire() as conn:
        await apply_migrations(conn)
    try:
        yield SimpleNamespace(pool=pool, settings=settings)
    finally:
        await pool.close()


async def _device(pool, kind: DeviceKind, **where: str) -> Device:
    async with pool.acquire() as conn:
        device, _ = await add_device(conn, name=f"t-{kind.value}-{uuid.uuid4().hex[:6]}", kind=kind, **where)
    return device


async def _flight(pool, *, gate: str = "23", state: FlightState = FlightState.BOARDING) -> Flight:
    departure = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=30)
    flight = Flight(id=uuid.uuid4(), airline="CX", number=str(uuid.uuid4().int % 9000 + 1000),
                    scheduled_departure=departure, window_start=window_start(departure, 3600),
                    destination="LAX", international=True, state=state, gate=gate)
    async with pool.acquire() as conn:
        await flight_q.insert(conn, flight)
    return flight


async def _token(pool, flight: Flight, kiosk: Device, *, state: str = "enrolled", on_hold: bool = False,
                 lounge: bool = True) -> uuid.UUID:
    token_id, consent_id = uuid.uuid4(), uuid.uuid4()
    doc = hashlib.sha256(token_id.bytes).digest()
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO consents (id, flight_id, document_key, terms_version, terms_sha256,"
                           " consented_at, device_id) VALUES ($1, $2, $3, 'v1', $4, now(), $5)",
                           consent_id, flight.id, doc, "0" * 64, kiosk.id)
        await conn.execute("INSERT INTO tokens (id, flight_id, document_key, document_type, document_last4,"
                           " issuing_state, nationality, surname, given_names, booking_reference, seat,"
                           " lounge_eligible, state, on_hold, consent_id) VALUES ($1, $2, $3, 'P', '1234', 'HKG',"
                           " 'HKG', 'CHAN', 'TAI MAN', 'ABC123', '42A', $4, $5, $6, $7)",
                           token_id, flight.id, doc, lounge, state, on_hold, consent_id)
    return token_id


async def _token_row(pool, token_id: uuid.UUID):
    return await pool.fetchrow("SELECT state, cleared_at, boarded_at, last_lounge_at FROM tokens WHERE id = $1",
                               token_id)


async def _event(pool, event_id: int):
    return await pool.fetchrow("SELECT * FROM journey_events WHERE id = $1", event_id)


async def _audits(pool, token_id: uuid.UUID) -> list:
    return await pool.fetch("SELECT actor, action, outcome, flight_id, detail::text AS detail FROM audit_events"
                            " WHERE token_id = $1", token_id)


async def test_a_clearance_moves_the_token_and_records_a_proceed_event(db) -> None:
    kiosk, e_channel = await _device(db.pool, DeviceKind.KIOSK), await _device(db.pool, DeviceKind.E_CHANNEL)
    flight = await _flight(db.pool, state=FlightState.SCHEDULED)
    token = await _token(db.pool, flight, kiosk)
    event_id, reason, _ = await journey_q.record_decision(
        db.pool, device_id=e_channel.id, touchpoint="e_channel", flight_id=flight.id, token_id=token,
        reason="matched", transition=("enrolled", "immigration_cleared"), lounge_entry=False, audit_refusal=False,
        score=0.71, margin=0.3, latency_ms=12.5)
    assert reason == "matched"
    row = await _token_row(db.pool, token)
    assert row["state"] == "immigration_cleared" and row["cleared_at"] is not None and row["boarded_at"] is None
    event = await _event(db.pool, event_id)
    assert (event["decision"], event["reason"], event["token_id"], event["flight_id"]) == (
        "proceed", "matched", token, flight.id)
    assert event["score"] == pytest.approx(0.71) and event["latency_ms"] == pytest.approx(12.5)
    assert await _audits(db.pool, token) == []


@pytest.mark.parametrize("state, on_hold", [("immigration_cleared", False), ("enrolled", True)])
async def test_a_transition_from_a_state_no_longer_there_is_state_changed_and_changes_nothing(
        db, state: str, on_hold: bool) -> None:
    kiosk, gate = await _device(db.pool, DeviceKind.KIOSK), await _device(db.pool, DeviceKind.GATE, gate="23")
    flight = await _flight(db.pool)
    # The decision was based on 'enrolled'; meanwhile the token moved on (or was put on hold).
    token = await _token(db.pool, flight, kiosk, state=state, on_hold=on_hold)
    event_id, reason, _ = await journey_q.record_decision(
        db.pool, device_id=gate.id, touchpoint="gate", flight_id=flight.id, token_id=token, reason="matched",
        transition=("enrolled", "boarded"), lounge_entry=False, audit_refusal=False, score=0.8, margin=0.4,
        latency_ms=1.0)
    assert reason == "state_changed"
    row = await _token_row(db.pool, token)
    assert row["state"] == state and row["boarded_at"] is None
    event = await _event(db.pool, event_id)
    assert (event["decision"], event["reason"], event["token_id"]) == ("refer", "state_changed", None)
    assert await _audits(db.pool, token) == []


async def test_a_lounge_entry_is_stamped_without_moving_the_token(db) -> None:
    kiosk = await _device(db.pool, DeviceKind.KIOSK)
    lounge = await _device(db.pool, DeviceKind.LOUNGE, lounge_id="L1")
    flight = await _flight(db.pool, state=FlightState.SCHEDULED)
    token = await _token(db.pool, flight, kiosk, state="immigration_cleared")
    event_id, reason, _ = await journey_q.record_decision(
        db.pool, device_id=lounge.id, touchpoint="lounge", flight_id=flight.id, token_id=token, reason="matched",
        transition=("immigration_cleared", "immigration_cleared"), lounge_entry=True, audit_refusal=False,
        score=0.6, margin=None, latency_ms=1.0)
    row = await _token_row(db.pool, token)
    assert reason == "matched" and row["state"] == "immigration_cleared" and row["last_lounge_at"] is not None
    assert row["cleared_at"] is None  # staying cleared is not clearing again
    assert (await _event(db.pool, event_id))["decision"] == "proceed"


@pytest.mark.parametrize("state, on_hold", [("revoked", False), ("immigration_cleared", True)])
async def test_a_lounge_entry_for_a_token_revoked_or_held_since_it_was_read_is_state_changed(
        db, state: str, on_hold: bool) -> None:
    kiosk = await _device(db.pool, DeviceKind.KIOSK)
    lounge = await _device(db.pool, DeviceKind.LOUNGE, lounge_id="L1")
    flight = await _flight(db.pool, state=FlightState.SCHEDULED)
    token = await _token(db.pool, flight, kiosk, state=state, on_hold=on_hold)
    event_id, reason, _ = await journey_q.record_decision(
        db.pool, device_id=lounge.id, touchpoint="lounge", flight_id=flight.id, token_id=token, reason="matched",
        transition=("immigration_cleared", "immigration_cleared"), lounge_entry=True, audit_refusal=False,
        score=0.6, margin=None, latency_ms=1.0)
    assert reason == "state_changed"
    assert (await _token_row(db.pool, token))["last_lounge_at"] is None
    assert (await _event(db.pool, event_id))["decision"] == "refer"


@pytest.mark.parametrize("state, on_hold, expected", [
    ("enrolled", False, "matched"), ("enrolled", True, "state_changed"), ("boarded", False, "state_changed")])
async def test_a_bag_drop_moves_nothing_records_its_bags_and_never_admits_a_token_held_or_moved_since(
        db, state: str, on_hold: bool, expected: str) -> None:
    kiosk = await _device(db.pool, DeviceKind.KIOSK)
    bag_drop = await _device(db.pool, DeviceKind.BAG_DROP)
    flight = await _flight(db.pool, state=FlightState.SCHEDULED)
    token = await _token(db.pool, flight, kiosk, state=state, on_hold=on_hold)
    before = await _token_row(db.pool, token)
    event_id, reason, _ = await journey_q.record_decision(
        db.pool, device_id=bag_drop.id, touchpoint="bag_drop", flight_id=flight.id, token_id=token, reason="matched",
        transition=("enrolled", "enrolled"), lounge_entry=False, audit_refusal=False, score=0.6, margin=None,
        latency_ms=1.0, bags=3)
    assert reason == expected
    assert await _token_row(db.pool, token) == before
    event = await _event(db.pool, event_id)
    assert (event["decision"], event["bags"]) == ("proceed" if expected == "matched" else "refer", 3)


async def test_only_a_bag_drop_event_carries_bags(db) -> None:
    kiosk = await _device(db.pool, DeviceKind.KIOSK)
    gate = await _device(db.pool, DeviceKind.GATE, gate="23")
    token = await _token(db.pool, await _flight(db.pool), kiosk)
    with pytest.raises(asyncpg.CheckViolationError):
        await journey_q.record_decision(
            db.pool, device_id=gate.id, touchpoint="gate", flight_id=None, token_id=token, reason="no_match",
            transition=None, lounge_entry=False, audit_refusal=False, score=None, margin=None, latency_ms=1.0,
            bags=1)


async def test_a_lounge_entry_without_the_state_it_was_decided_on_is_refused(db) -> None:
    with pytest.raises(ValueError):
        await journey_q.record_decision(
            db.pool, device_id=uuid.uuid4(), touchpoint="lounge", flight_id=None, token_id=uuid.uuid4(),
            reason="matched", transition=None, lounge_entry=True, audit_refusal=False, score=0.6, margin=None,
            latency_ms=1.0)


async def test_a_misuse_refusal_is_audited_and_keeps_the_token_on_its_event(db) -> None:
    kiosk, gate = await _device(db.pool, DeviceKind.KIOSK), await _device(db.pool, DeviceKind.GATE, gate="23")
    flight = await _flight(db.pool)
    token = await _token(db.pool, flight, kiosk, state="boarded")
    event_id, reason, _ = await journey_q.record_decision(
        db.pool, device_id=gate.id, touchpoint="gate", flight_id=flight.id, token_id=token,
        reason="already_boarded", transition=None, lounge_entry=False, audit_refusal=True, score=0.8, margin=0.4,
        latency_ms=1.0)
    assert reason == "already_boarded"
    event = await _event(db.pool, event_id)
    assert (event["decision"], event["reason"], event["token_id"]) == ("refer", "already_boarded", token)
    [audit] = await _audits(db.pool, token)
    assert (audit["actor"], audit["action"], audit["outcome"], audit["flight_id"]) == (
        f"device:{gate.id}", "gate.identify", "refused", flight.id)
    assert json.loads(audit["detail"]) == {"reason": "already_boarded"}
    assert (await _token_row(db.pool, token))["state"] == "boarded"


async def test_a_refusal_without_a_token_is_an_event_only(db) -> None:
    gate = await _device(db.pool, DeviceKind.GATE, gate="23")
    before = await db.pool.fetchval("SELECT count(*) FROM audit_events")
    event_id, reason, _ = await journey_q.record_decision(
        db.pool, device_id=gate.id, touchpoint="gate", flight_id=None, token_id=None, reason="no_match",
        transition=None, lounge_entry=False, audit_refusal=False, score=0.2, margin=None, latency_ms=1.0)
    event = await _event(db.pool, event_id)
    assert (reason, event["decision"], event["token_id"], event["flight_id"]) == ("no_match", "refer", None, None)
    assert await db.pool.fetchval("SELECT count(*) FROM audit_events") == before


async def test_two_gates_boarding_one_passenger_at_once_board_them_once(db) -> None:
    kiosk = await _device(db.pool, DeviceKind.KIOSK)
    gates = [await _device(db.pool, DeviceKind.GATE, gate="23") for _ in range(2)]
    flight = await _flight(db.pool)
    token = await _token(db.pool, flight, kiosk, state="immigration_cleared")
    services = cast(Services, SimpleNamespace(db=lambda: db.pool, settings=db.settings, galleries=GalleryRegistry(),
                                              instance_id="t"))  # all conclude reads
    match = MatchOutcome(token, DecisionReason.MATCHED, 0.8, 0.4)
    now, horizon = datetime.now(UTC), timedelta(hours=3)
    decisions = await asyncio.gather(*(conclude(services, g, match, None, None, now, horizon, time.perf_counter())
                                       for g in gates))
    reasons = sorted(d.reason for d in decisions)
    # The loser either read the token before the winner's write (state_changed) or after it.
    assert reasons in (["matched", "state_changed"], ["already_boarded", "matched"]), reasons
    winner = next(d for d in decisions if d.decision == "proceed")
    assert winner.passenger is not None and winner.passenger.seat == "42A" and winner.token_id == token
    rows = await db.pool.fetch("SELECT decision, reason, token_id FROM journey_events WHERE token_id = $1 OR"
                               " device_id = ANY($2::uuid[])", token, [g.id for g in gates])
    assert sorted(r["decision"] for r in rows) == ["proceed", "refer"]
    assert (await _token_row(db.pool, token))["state"] == "boarded"


async def test_a_referral_is_written_by_the_decision_itself_and_holds_only_a_live_token(db) -> None:
    kiosk, e_channel = await _device(db.pool, DeviceKind.KIOSK), await _device(db.pool, DeviceKind.E_CHANNEL)
    flight = await _flight(db.pool, state=FlightState.SCHEDULED)
    token = await _token(db.pool, flight, kiosk)

    def referral(hold: uuid.UUID) -> journey_q.Referral:
        return journey_q.Referral(kind="random", subject_id=None, score=None, hold_token_id=hold, terminal="T1",
                                  gate=None, lounge_id=None, channel="flighttoken_test", origin="test")

    results = []
    for hold in (token, uuid.uuid4()):  # a live token, then one purged meanwhile
        results.append(await journey_q.record_decision(
            db.pool, device_id=e_channel.id, touchpoint="e_channel", flight_id=flight.id, token_id=token,
            reason="see_officer", transition=None, lounge_entry=False, audit_refusal=False, score=0.7, margin=0.3,
            latency_ms=1.0, referral=referral(hold)))
    (first, reason, alert_id), (_, _, orphan_id) = results
    assert reason == "see_officer" and alert_id is not None and orphan_id is not None
    alerts = {r["id"]: r for r in await db.pool.fetch(
        "SELECT id, kind, subject_id, score, token_id, flight_id FROM alerts WHERE id = ANY($1::bigint[])",
        [alert_id, orphan_id])}
    assert (alerts[alert_id]["kind"], alerts[alert_id]["token_id"], alerts[alert_id]["flight_id"]) == (
        "random", token, flight.id)
    assert alerts[alert_id]["subject_id"] is None and alerts[alert_id]["score"] is None
    assert alerts[orphan_id]["token_id"] is None
    holds = await db.pool.fetch("SELECT token_id, holder, alert_id FROM token_holds WHERE alert_id = ANY($1::bigint[])",
                                [alert_id, orphan_id])
    assert [(h["token_id"], h["holder"], h["alert_id"]) for h in holds] == [(token, "authority", alert_id)]
    row = await db.pool.fetchrow("SELECT state, on_hold FROM tokens WHERE id = $1", token)
    assert (row["state"], row["on_hold"]) == ("enrolled", True)
    event = await _event(db.pool, first)
    assert (event["decision"], event["reason"], event["token_id"], event["flight_id"]) == (
        "refer", "see_officer", None, flight.id)
    # No referral: nothing of the kind is written.
    before = await db.pool.fetchval("SELECT count(*) FROM alerts")
    _, _, none = await journey_q.record_decision(
        db.pool, device_id=e_channel.id, touchpoint="e_channel", flight_id=None, token_id=None, reason="no_match",
        transition=None, lounge_entry=False, audit_refusal=False, score=0.2, margin=None, latency_ms=1.0)
    assert none is None and await db.pool.fetchval("SELECT count(*) FROM alerts") == before
