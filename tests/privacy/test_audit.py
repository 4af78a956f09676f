"""The audit trail: every admin action, enrolment, decision, opt-out and purge is an event an admin can
query by flight, device, time and action; nobody (the application included) can change or remove
events; retention removes only events older than its own setting."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from flighttoken.privacy.retention import apply_retention
from flighttoken.testing import identities
from tests.support import journey as j


@pytest.fixture(scope="module")
async def world(make_service):
    settings = make_service.settings(purge_sweep_interval_s=3600)
    async with make_service(settings) as svc:
        keys = await j.make_devices(svc.services.db())
        ids = {r["name"][5:]: r["id"] for r in await svc.services.db().fetch("SELECT id, name FROM devices")}
        async with svc.client(keys["admin"]) as admin:
            a = await j.create_flight(admin, "300", "23")
            b = await j.create_flight(admin, "301", "24")
            for state in ("boarding", "departed"):  # b departs: purged, audited
                assert (await admin.post(f"/v1/flights/{b['id']}/state", json={"state": state})).is_success
        stranger = identities(settings.faces_dir, max_photos=1)[0][1][0]
        async with svc.client(keys["e_channel"]) as e_channel:
            for _ in range(3):
                await j.identify(e_channel, stranger)
        yield svc, keys, ids, a, b


async def _get(svc, key: str, path: str, **params) -> dict:
    async with svc.client(key) as client:
        r = await client.get(path, params={k: v for k, v in params.items() if v is not None})
    assert r.status_code == 200, r.text
    return r.json()


async def test_events_say_who_where_when_what_and_with_what_outcome(world) -> None:
    svc, keys, ids, a, _ = world
    page = await _get(svc, keys["admin"], "/v1/audit", flight_id=a["id"])
    assert [e["action"] for e in page["events"]] == ["flight.create"]
    event = page["events"][0]
    assert event["outcome"] == "ok" and event["flight_id"] == a["id"]
    assert event["actor"] == f"device:{ids['admin']}"
    assert event["device"] == {"id": str(ids["admin"]), "name": "test-admin", "kind": "admin", "terminal": "T1"}
    assert datetime.fromisoformat(event["at"]) <= datetime.now(UTC)


async def test_a_purge_is_in_the_trail_with_its_destroyed_key(world) -> None:
    svc, keys, _, _, b = world
    page = await _get(svc, keys["admin"], "/v1/audit", flight_id=b["id"], action="flight.purge")
    receipt = await _get(svc, keys["admin"], f"/v1/purge-receipts/{b['id']}")
    [event] = page["events"]
    assert event["actor"] == "system" and event["device"] is None
    assert event["detail"]["key_id"] == receipt["key_id"] and event["detail"]["trigger"] == "departed"
    flight_events = await _get(svc, keys["admin"], "/v1/audit", flight_id=b["id"], action="flight.*")
    assert [e["action"] for e in flight_events["events"]] == ["flight.create", "flight.boarding", "flight.departed",
                                                             "flight.purge"]


async def test_filters_by_device_time_action_and_outcome_combine(world) -> None:
    svc, keys, ids, _, _ = world
    everything = (await _get(svc, keys["admin"], "/v1/audit", limit=1000))["events"]
    by_admin = (await _get(svc, keys["admin"], "/v1/audit", device_id=str(ids["admin"]), limit=1000))["events"]
    assert by_admin and all(e["actor"] == f"device:{ids['admin']}" for e in by_admin)
    assert any(e["actor"] == "system" for e in everything), "the purge's event is not the admin's"
    middle = everything[len(everything) // 2]
    since = (await _get(svc, keys["admin"], "/v1/audit", since=middle["at"], limit=1000))["events"]
    assert since and all(e["at"] >= middle["at"] for e in since)
    until = (await _get(svc, keys["admin"], "/v1/audit", until=middle["at"], limit=1000))["events"]
    assert all(e["at"] < middle["at"] for e in until)
    assert {e["id"] for e in since} | {e["id"] for e in until} >= {e["id"] for e in everything}
    none = (await _get(svc, keys["admin"], "/v1/audit", action="flight.create", outcome="refused"))["events"]
    assert none == []


async def test_pages_follow_the_cursor_without_gaps_or_repeats(world) -> None:
    svc, keys, _, _, _ = world
    everything = [e["id"] for e in (await _get(svc, keys["admin"], "/v1/audit", limit=1000))["events"]]
    seen, cursor = [], None
    while True:
        page = await _get(svc, keys["admin"], "/v1/audit", limit=2, cursor=cursor)
        seen += [e["id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Reads are audited as they happen, so the trail grew while we paged: it starts with everything.
    assert seen[:len(everything)] == everything
    assert len(set(seen)) == len(seen)


async def test_decisions_are_queryable_by_device(world) -> None:
    svc, keys, ids, _, _ = world
    page = await _get(svc, keys["admin"], "/v1/audit/decisions", device_id=str(ids["e_channel"]), decision="refer")
    assert len(page["decisions"]) == 3
    d = page["decisions"][0]
    assert d["touchpoint"] == "e_channel" and d["device"]["kind"] == "e_channel" and d["token_id"] is None
    assert (await _get(svc, keys["admin"], "/v1/audit/decisions", device_id=str(ids["gate23"])))["decisions"] == []


async def test_reading_the_trail_is_itself_audited(world) -> None:
    svc, keys, ids, a, _ = world
    await _get(svc, keys["admin"], "/v1/audit", flight_id=a["id"], action="token.*")
    reads = (await _get(svc, keys["admin"], "/v1/audit", action="audit.read_events", limit=1000))["events"]
    assert any(e["detail"] == {"flight_id": a["id"], "action": "token.*"} and e["actor"] == f"device:{ids['admin']}"
               for e in reads)


@pytest.mark.parametrize(("params", "code"), [
    ({"since": "2026-01-01T00:00:00"}, "timezone_required"),
    ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "invalid_time_range"),
    ({"limit": "0"}, "invalid_request"),
    ({"limit": "5000"}, "invalid_request"),
    ({"cursor": "abc"}, "invalid_cursor"),
    ({"flight_id": "not-a-uuid"}, "invalid_request"),
    ({"action": "to*ken"}, "invalid_action_filter"),
])
async def test_bad_filters_are_a_400(world, params: dict, code: str) -> None:
    svc, keys, _, _, _ = world
    async with svc.client(keys["admin"]) as admin:
        r = await admin.get("/v1/audit", params=params)
    assert r.status_code == 400 and r.json()["code"] == code, r.text


async def test_only_admins_read_the_trail(world) -> None:
    svc, keys, _, _, _ = world
    for kind in ("kiosk", "e_channel", "gate23"):
        async with svc.client(keys[kind]) as client:
            for path in ("/v1/audit", "/v1/audit/decisions", "/v1/purge-receipts"):
                assert (await client.get(path)).status_code == 403


@pytest.mark.parametrize("table", ["audit_events", "journey_events", "authority_audit_events"])
async def test_the_application_role_cannot_change_or_remove_events(world, table: str) -> None:
    svc = world[0]
    async with svc.services.db().acquire() as conn:  # the service's own connection and role
        if table == "authority_audit_events":  # no watchlist here: give the row triggers a row
            await conn.execute("INSERT INTO authority_audit_events (actor, action, outcome)"
                               " VALUES ('test', 'watchlist.test', 'ok')")
        before = await conn.fetchval(f"SELECT count(*) FROM {table}")
        column = "reason" if table == "journey_events" else "action"
        for sql in (f"UPDATE {table} SET {column} = 'x'", f"DELETE FROM {table}", f"TRUNCATE {table}"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)
        # The retention escape hatch does not open for recent rows, nor without a cutoff.
        for cutoff in ("", datetime.now(UTC).isoformat(), (datetime.now(UTC) + timedelta(days=9)).isoformat()):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with conn.transaction():
                    await conn.execute("SELECT set_config('flighttoken.retention_purge', 'on', true),"
                                       " set_config('flighttoken.retention_cutoff', $1, true)", cutoff)
                    await conn.execute(f"DELETE FROM {table}")
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == before


async def test_retention_deletes_only_events_older_than_its_setting(world) -> None:
    svc, _, ids, _, _ = world
    pool = svc.services.db()
    old, recent = datetime.now(UTC) - timedelta(days=400), datetime.now(UTC) - timedelta(days=300)
    for at in (old, recent):
        await pool.execute("INSERT INTO audit_events (at, actor, action, outcome)"
                           " VALUES ($1, 'test', 'test.old', 'ok')", at)
        await pool.execute("INSERT INTO journey_events (at, device_id, touchpoint, decision, reason, latency_ms)"
                           " VALUES ($1, $2, 'e_channel', 'refer', 'no_match', 1)", at, ids["e_channel"])
    counts = {t: await pool.fetchval(f"SELECT count(*) FROM {t}") for t in ("audit_events", "journey_events")}

    keep_forever = dataclasses.replace(svc.services, settings=svc.services.settings.replace(audit_retention_days=0))
    assert (await apply_retention(keep_forever)).deleted == {}
    one_year = dataclasses.replace(svc.services, settings=svc.services.settings.replace(audit_retention_days=365))
    report = await apply_retention(one_year)

    assert report.deleted == {"audit_events": 1, "journey_events": 1}
    assert await pool.fetchval("SELECT count(*) FROM audit_events WHERE action = 'test.old'") == 1
    assert await pool.fetchval("SELECT min(at) FROM journey_events") > old
    assert await pool.fetchval("SELECT count(*) FROM journey_events") == counts["journey_events"] - 1
    event = await pool.fetchrow("SELECT actor, detail FROM audit_events WHERE action = 'audit.retention'")
    assert event["actor"] == "system" and '"retention_days": 365' in event["detail"]
    assert (await apply_retention(one_year)).deleted == {"audit_events": 0, "journey_events": 0}


async def test_retention_covers_the_authority_trail_and_reports_it_only_there(world) -> None:
    svc = world[0]
    pool = svc.services.db()
    old = datetime.now(UTC) - timedelta(days=400)
    await pool.execute("INSERT INTO authority_audit_events (at, actor, action, outcome)"
                       " VALUES ($1, 'system', 'watchlist.subject.enrol', 'ok')", old)
    one_year = dataclasses.replace(svc.services, settings=svc.services.settings.replace(audit_retention_days=365))
    public_before = await pool.fetchval("SELECT count(*) FROM audit_events")

    report = await apply_retention(one_year)

    assert report.authority_deleted == 1 and "authority_audit_events" not in report.deleted
    assert await pool.fetchval("SELECT count(*) FROM authority_audit_events WHERE at < now() - interval '1 year'") == 0
    noted = await pool.fetchrow("SELECT actor, detail FROM authority_audit_events"
                                " WHERE action = 'watchlist.audit.retention'")
    assert noted["actor"] == "system" and '"deleted": 1' in noted["detail"]
    # Nothing new in the admin's trail: no retention row names the authority's volume.
    assert await pool.fetchval("SELECT count(*) FROM audit_events") == public_before

