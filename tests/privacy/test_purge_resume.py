"""A purge survives crashes: killed with -9 at each step it is finished by the next instance that
starts on the database; flights nobody closed are purged after departure + grace; a purge failing
inside the closure hook leaves the state change standing and is finished by the sweeper."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import asyncpg
import pytest

from flighttoken.crypto.keys import generate_master_key
from flighttoken.db.keystore import KeyStore
from flighttoken.db.migrate import apply_migrations
from flighttoken.db.pool import create_pool
from flighttoken.db.queries import flights as flight_q
from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.flights.model import FlightState
from flighttoken.privacy.sweeper import Sweeper
from flighttoken.privacy.vault import TemplateVault, load_master_key
from flighttoken.services import Services
from flighttoken.settings import CHECKOUT_ROOT
from flighttoken.testing import identities, run_service
from tests.privacy.helpers import seed_flight
from tests.support.journey import enrolment, make_devices

PASSENGERS = 25
DEADLINE_S = 60  # liveness only: how long to wait for a background pass before calling it stuck


@pytest.fixture(scope="module")
async def env(make_service, database_url, face_engine):
    settings = make_service.settings(master_key=generate_master_key("kek-resume"), purge_sweep_interval_s=3600)
    pool = await create_pool(database_url, settings)
    keystore = await KeyStore.open(database_url, settings)
    async with pool.acquire() as conn:
        await apply_migrations(conn, hooks=keystore.service_migration_hooks())
        kiosk, _ = await add_device(conn, name="resume-kiosk", kind=DeviceKind.KIOSK)
    services = Services(settings=settings, dsn=database_url, pool=pool, engine=face_engine)
    services.vault = TemplateVault(load_master_key(settings), keystore)
    try:
        yield settings, services, kiosk.id
    finally:
        await pool.close()
        await keystore.close()


async def _seed(env, number: str, **kw):
    _, services, kiosk_id = env
    return await seed_flight(services, number=number, passengers=PASSENGERS, device_id=kiosk_id,
                             model_id=services.engine.model_id, **kw)


async def _state(services: Services, flight_id: uuid.UUID) -> dict:
    keystore = services.vault.keystore.pool
    async with services.db().acquire() as conn:
        return {
            "key": await keystore.fetchrow("SELECT key_id, kek_id FROM flight_data_keys WHERE flight_id = $1",
                                           flight_id),
            "marker": await conn.fetchval("SELECT key_id FROM flight_keys WHERE flight_id = $1", flight_id),
            "templates": await conn.fetchval("SELECT count(*) FROM templates WHERE flight_id = $1", flight_id),
            "expired": await conn.fetchval("SELECT count(*) FROM tokens WHERE flight_id = $1 AND state = 'expired'",
                                           flight_id),
            "receipt": await conn.fetchrow("SELECT * FROM purge_receipts WHERE flight_id = $1", flight_id),
            "audits": await conn.fetchval("SELECT count(*) FROM audit_events WHERE action = 'flight.purge'"
                                          " AND flight_id = $1", flight_id),
            "purged_at": await conn.fetchval("SELECT purged_at FROM flights WHERE id = $1", flight_id),
        }


async def _wait_for_receipt(pool: asyncpg.Pool, flight_id: uuid.UUID) -> None:
    started = time.monotonic()
    while time.monotonic() - started < DEADLINE_S:
        if await pool.fetchval("SELECT completed_at FROM purge_receipts WHERE flight_id = $1", flight_id):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the purge was not finished")


def _kill_at(settings, flight_id: uuid.UUID, step: str) -> int:
    proc = subprocess.run([sys.executable, "-m", "tests.privacy.kill_mid_purge", settings.database.database_url,
                           settings.privacy.master_key, str(flight_id), step], cwd=CHECKOUT_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return proc.returncode


def _assert_fully_purged(state: dict, key_id: uuid.UUID, trigger: str = "departed") -> None:
    r = state["receipt"]
    assert r["completed_at"] is not None
    assert (r["trigger"], r["key_id"], r["templates_deleted"], r["tokens_ended"], r["tokens_total"]) == (
        trigger, key_id, PASSENGERS, PASSENGERS, PASSENGERS)
    assert r["consents_kept"] == PASSENGERS
    assert state["key"] is None and state["marker"] is None
    assert state["templates"] == 0 and state["expired"] == PASSENGERS
    assert state["audits"] == 1, "one purge, one audit event, however many runs it took"
    assert state["purged_at"] is not None


# What must already be true when the process dies at each step (and what must not). "key": the data
# key in the key store; "marker": its id in the service database.
PARTIAL = {
    "keystore.destroy_flight_keys": {"key": True, "marker": True, "templates": PASSENGERS},  # only "started"
    "delete_flight_keys": {"key": False, "marker": True, "templates": PASSENGERS},  # shredded, nothing else
    "tokens.end_tokens": {"key": False, "marker": False, "templates": PASSENGERS},  # rows still there
    "complete_purges": {"key": False, "marker": False, "templates": 0},  # only the receipt is missing
}


@pytest.mark.parametrize("step", list(PARTIAL))
async def test_a_purge_killed_at_any_step_is_completed_by_the_next_start(env, step: str) -> None:
    settings, services, _ = env
    seeded = await _seed(env, f"7{list(PARTIAL).index(step)}0")
    flight_id = seeded.flight.id
    key_id = (await _state(services, flight_id))["key"]["key_id"]
    await flight_q.set_state(services.db(), flight_id, FlightState.BOARDING)
    await flight_q.set_state(services.db(), flight_id, FlightState.DEPARTED)

    _kill_at(settings, flight_id, step)

    half = await _state(services, flight_id)
    assert half["receipt"] is not None and half["receipt"]["completed_at"] is None
    assert (half["key"] is not None) == PARTIAL[step]["key"]
    assert (half["marker"] is not None) == PARTIAL[step]["marker"]
    assert half["templates"] == PARTIAL[step]["templates"]
    assert half["audits"] == 0
    if not PARTIAL[step]["marker"]:
        assert half["receipt"]["key_id"] == key_id, "the receipt names the key in the commit that drops its marker"

    async with run_service(settings, engine=services.engine) as svc:
        await _wait_for_receipt(svc.services.db(), flight_id)
        assert not any(svc.services.galleries.contains(t) for t in seeded.token_ids)
    _assert_fully_purged(await _state(services, flight_id), key_id)


async def test_a_flight_closed_by_a_process_that_died_before_its_purge_is_purged_at_start(env) -> None:
    settings, services, _ = env
    seeded = await _seed(env, "780")
    key_id = (await _state(services, seeded.flight.id))["key"]["key_id"]
    await flight_q.set_state(services.db(), seeded.flight.id, FlightState.CANCELLED)  # no hook ran
    async with run_service(settings, engine=services.engine) as svc:
        await _wait_for_receipt(svc.services.db(), seeded.flight.id)
    state = await _state(services, seeded.flight.id)
    _assert_fully_purged(state, key_id, trigger="cancelled")
    reasons = await services.db().fetch("SELECT DISTINCT end_reason FROM tokens WHERE flight_id = $1",
                                        seeded.flight.id)
    assert [r["end_reason"] for r in reasons] == ["flight_cancelled"]


async def test_a_flight_nobody_closed_is_purged_once_departure_plus_grace_has_passed(env) -> None:
    settings, services, _ = env
    overdue = await _seed(env, "790", departs_in=-timedelta(hours=3))
    within_grace = await _seed(env, "791", departs_in=-timedelta(minutes=30))
    key_id = (await _state(services, overdue.flight.id))["key"]["key_id"]
    fast = settings.replace(purge_grace_s=7200, purge_sweep_interval_s=0.2)
    async with run_service(fast, engine=services.engine) as svc:
        assert svc.services.galleries.contains(within_grace.token_ids[0])
        await _wait_for_receipt(svc.services.db(), overdue.flight.id)
        # A few more passes: the flight still within its grace must stay untouched.
        await asyncio.sleep(1.0)
        assert svc.services.galleries.contains(within_grace.token_ids[0])
        assert not svc.services.galleries.contains(overdue.token_ids[0])
    _assert_fully_purged(await _state(services, overdue.flight.id), key_id, trigger="grace_elapsed")
    untouched = await _state(services, within_grace.flight.id)
    assert untouched["receipt"] is None and untouched["key"] is not None
    assert untouched["templates"] == PASSENGERS
    # Its state was never closed; the purge does not pretend it departed.
    overdue_now = await flight_q.by_id(services.db(), overdue.flight.id)
    assert overdue_now is not None and overdue_now.state is FlightState.SCHEDULED


async def test_after_a_grace_purge_the_flight_accepts_no_enrolment_and_no_template(env) -> None:
    settings, services, _ = env
    seeded = await _seed(env, "795", departs_in=-timedelta(hours=3))
    async with run_service(settings, engine=services.engine) as svc:
        await _wait_for_receipt(svc.services.db(), seeded.flight.id)  # the start-up pass
        keys = await make_devices(svc.services.db())
        _, photos = identities(settings.faces_dir, min_photos=2)[5]
        async with svc.client(keys["kiosk"]) as kiosk:
            r = await kiosk.post("/v1/enrolments", json=enrolment(photos[0], str(seeded.flight.id),
                                                                  document_number="G00000001"))
    assert r.status_code == 409 and r.json()["code"] == "flight_closed", r.text
    before = await _state(services, seeded.flight.id)
    # Even code holding a cached key can't store a template for it: the database refuses.
    with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError):
        await services.db().execute(
            "INSERT INTO templates (token_id, flight_id, model_id, sealed, quality) VALUES ($1, $2, 'm', '\\x00', 1)",
            seeded.token_ids[0], seeded.flight.id)
    assert await services.db().fetchval("SELECT count(*) FROM consents WHERE flight_id = $1",
                                        seeded.flight.id) == before["receipt"]["consents_kept"]


async def test_a_purge_failing_in_the_closure_hook_keeps_the_departure_and_is_finished_by_the_sweeper(
        env, monkeypatch) -> None:
    settings, services, _ = env
    seeded = await _seed(env, "796")
    key_id = (await _state(services, seeded.flight.id))["key"]["key_id"]
    from flighttoken.db.queries import tokens as q

    async with run_service(settings, engine=services.engine) as svc:
        keys = await make_devices(svc.services.db())
        assert svc.services.galleries.contains(seeded.token_ids[0])

        async def database_gone(*args, **kwargs):
            raise ConnectionResetError("connection lost")

        with monkeypatch.context() as m:
            m.setattr(q, "end_tokens", database_gone)
            async with svc.client(keys["admin"]) as admin:
                fid = seeded.flight.id
                assert (await admin.post(f"/v1/flights/{fid}/state", json={"state": "boarding"})).status_code == 200
                r = await admin.post(f"/v1/flights/{fid}/state", json={"state": "departed"})
        assert r.status_code == 200 and r.json()["state"] == "departed"
        assert not svc.services.galleries.contains(seeded.token_ids[0]), "left this instance's galleries anyway"
        half = await _state(services, seeded.flight.id)
        assert half["key"] is None and half["templates"] == PASSENGERS and half["receipt"]["completed_at"] is None
        report = await Sweeper(svc.services).sweep_once()
        assert report.purged == [seeded.flight.code] and report.failed == []
    _assert_fully_purged(await _state(services, seeded.flight.id), key_id)


async def test_one_sweeper_pass_purges_a_whole_window_each_flight_with_its_own_receipt(env) -> None:
    _, services, _ = env
    seeded = [await _seed(env, f"81{i}") for i in range(3)]
    keys = {s.flight.id: (await _state(services, s.flight.id))["key"]["key_id"] for s in seeded}
    for s in seeded:
        await flight_q.set_state(services.db(), s.flight.id, FlightState.CANCELLED)
    report = await Sweeper(services).sweep_once()
    assert sorted(report.purged) == sorted(s.flight.code for s in seeded) and report.failed == []
    for s in seeded:
        _assert_fully_purged(await _state(services, s.flight.id), keys[s.flight.id], trigger="cancelled")


async def test_when_a_window_purge_fails_the_sweeper_purges_its_flights_one_by_one(env, monkeypatch) -> None:
    _, services, _ = env
    seeded = [await _seed(env, f"82{i}") for i in range(2)]
    keys = {s.flight.id: (await _state(services, s.flight.id))["key"]["key_id"] for s in seeded}
    for s in seeded:
        await flight_q.set_state(services.db(), s.flight.id, FlightState.CANCELLED)
    from flighttoken.db.queries import tokens as q

    real = q.end_tokens

    async def fails_for_many(conn, flight_reasons, **kwargs):
        if len(flight_reasons) > 1:
            raise RuntimeError("statement too large")
        return await real(conn, flight_reasons, **kwargs)

    monkeypatch.setattr(q, "end_tokens", fails_for_many)
    report = await Sweeper(services).sweep_once()
    assert sorted(report.purged) == sorted(s.flight.code for s in seeded) and report.failed == []
    for s in seeded:
        _assert_fully_purged(await _state(services, s.flight.id), keys[s.flight.id], trigger="cancelled")


async def test_purge_settings_are_validated() -> None:
    from flighttoken.settings import SettingsError, load_settings

    for env_var, value in (("FLIGHTTOKEN_PURGE_GRACE_S", "-1"), ("FLIGHTTOKEN_PURGE_SWEEP_INTERVAL_S", "0"),
                           ("FLIGHTTOKEN_AUDIT_RETENTION_DAYS", "-5"), ("FLIGHTTOKEN_PURGE_GRACE_S", "two hours")):
        with pytest.raises(SettingsError, match=env_var):
            load_settings({env_var: value})
    s = load_settings({"FLIGHTTOKEN_PURGE_GRACE_S": "0", "FLIGHTTOKEN_AUDIT_RETENTION_DAYS": "0"})
    assert (s.privacy.purge_grace_s, s.privacy.audit_retention_days) == (0, 0)
