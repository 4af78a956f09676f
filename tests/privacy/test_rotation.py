"""`flighttoken keys rotate`: every data key in the key store is rewrapped under the current master key;
templates (in the service database) are not touched; keys under a master key missing from the ring are
reported and left as they were."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flighttoken.crypto.keys import MasterKey, WrappedKey, generate_master_key
from flighttoken.db.keystore import KeyStore
from flighttoken.db.migrate import apply_migrations
from flighttoken.db.pool import create_pool
from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.privacy.vault import TemplateVault, flight_context
from flighttoken.services import Services
from flighttoken.settings import CHECKOUT_ROOT
from flighttoken.watchlist import vault as watchlist_vault
from tests.privacy.helpers import seed_flight

pytestmark = pytest.mark.integration  # the CLI in a subprocess, against PostgreSQL

KEK_A, KEK_B, KEK_Z = (generate_master_key(f"kek-{x}") for x in "abz")
MODEL = "test-model"


def _cli(database_url: str, tmp_path: Path, *args: str, master_key: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTTOKEN_") and k != "DATABASE_URL"}
    env.update(DATABASE_URL=database_url, FLIGHTTOKEN_DATA_DIR=str(tmp_path))
    if master_key:
        env["FLIGHTTOKEN_MASTER_KEY"] = master_key
    return subprocess.run([sys.executable, "-m", "flighttoken", *args], env=env, cwd=CHECKOUT_ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
async def world(base_settings, database_url):
    pool = await create_pool(database_url, base_settings)
    keystore = await KeyStore.open(database_url, base_settings)  # the one the CLI finds: <db>_keys
    async with pool.acquire() as conn:
        await apply_migrations(conn, hooks=keystore.service_migration_hooks())
        kiosk, _ = await add_device(conn, name="rotation-kiosk", kind=DeviceKind.KIOSK)
    seeded = []
    for i in range(3):
        services = Services(settings=base_settings.replace(master_key=KEK_A), pool=pool)
        services.vault = TemplateVault(MasterKey.parse(KEK_A), keystore)
        seeded.append(await seed_flight(services, number=f"50{i}", passengers=5, device_id=kiosk.id, model_id=MODEL))
    async with pool.acquire() as conn, conn.transaction():
        await watchlist_vault.current_key(services.vault, conn)  # the watchlist's own data key
    try:
        yield pool, keystore, seeded, kiosk.id
    finally:
        await pool.close()
        await keystore.close()


async def _keys(keystore):
    return {r["flight_id"]: r for r in await keystore.pool.fetch(
        "SELECT flight_id, key_id, kek_id, wrapped FROM flight_data_keys")}


async def _watchlist_keys(keystore):
    return {r["id"]: (r["kek_id"], bytes(r["wrapped"]))
            for r in await keystore.pool.fetch("SELECT * FROM watchlist_data_keys")}


async def _templates(pool):
    return {r["token_id"]: bytes(r["sealed"]) for r in await pool.fetch("SELECT token_id, sealed FROM templates")}


async def test_rotation_rewraps_every_data_key_and_leaves_templates_alone(world, database_url, tmp_path) -> None:
    pool, keystore, seeded, _ = world
    keys_before, watchlist_before = await _keys(keystore), await _watchlist_keys(keystore)
    templates_before = await _templates(pool)

    proc = _cli(database_url, tmp_path, "keys", "rotate", master_key=f"{KEK_B},{KEK_A}")

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "rewrapped 4 data keys under kek-b; 0 already current; 0 unreadable"
    keys_after = await _keys(keystore)
    assert {r["kek_id"] for r in keys_after.values()} == {"kek-b"}
    for flight_id, before in keys_before.items():
        assert keys_after[flight_id]["key_id"] == before["key_id"]
        assert bytes(keys_after[flight_id]["wrapped"]) != bytes(before["wrapped"])
    templates_after = await _templates(pool)
    [(watchlist_key_id, (_, old_wrapped))] = watchlist_before.items()
    new_kek, new_wrapped = (await _watchlist_keys(keystore))[watchlist_key_id]
    assert new_kek == "kek-b" and new_wrapped != old_wrapped
    assert len(MasterKey.parse(KEK_B).unwrap(WrappedKey(new_kek, new_wrapped),
                                             watchlist_vault.key_context(watchlist_key_id))) == 32
    assert templates_after == templates_before
    # The old master key can now be retired: the new one alone opens every template.
    only_b = MasterKey.parse(KEK_B)
    for s in seeded:
        k = keys_after[s.flight.id]
        dek = only_b.unwrap(WrappedKey(k["kek_id"], bytes(k["wrapped"])), flight_context(s.flight.id))
        for token_id, vector in s.vectors.items():
            opened = TemplateVault.open_template(dek, token_id, MODEL, templates_after[token_id])
            np.testing.assert_allclose(opened, vector, rtol=0, atol=1e-6)
    event = await pool.fetchrow("SELECT actor, outcome, detail FROM audit_events WHERE action = 'keys.rotate'")
    assert (event["actor"], event["outcome"]) == ("cli", "ok")

    again = _cli(database_url, tmp_path, "keys", "rotate", master_key=f"{KEK_B},{KEK_A}")
    assert again.returncode == 0
    assert again.stdout.strip() == "rewrapped 0 data keys under kek-b; 4 already current; 0 unreadable"


async def test_keys_under_a_master_key_missing_from_the_ring_are_reported_and_kept(world, base_settings,
                                                                                   database_url, tmp_path) -> None:
    pool, keystore, _, kiosk_id = world
    services = Services(settings=base_settings.replace(master_key=KEK_Z), pool=pool)
    services.vault = TemplateVault(MasterKey.parse(KEK_Z), keystore)
    lost = await seed_flight(services, number="599", passengers=2, device_id=kiosk_id, model_id=MODEL)
    before = (await _keys(keystore))[lost.flight.id]

    proc = _cli(database_url, tmp_path, "keys", "rotate", master_key=f"{KEK_B},{KEK_A}")

    assert proc.returncode == 1
    assert "1 unreadable" in proc.stdout and "kek-z" in proc.stdout
    after = (await _keys(keystore))[lost.flight.id]
    assert (after["kek_id"], bytes(after["wrapped"])) == (before["kek_id"], bytes(before["wrapped"]))


def test_keys_generate_prints_a_keyring_entry(tmp_path) -> None:
    proc = _cli("postgresql://unused@127.0.0.1:1/none", tmp_path, "keys", "generate", "--id", "kek-2027-01")
    assert proc.returncode == 0
    ring = MasterKey.parse(proc.stdout.strip())
    assert ring.current_id == "kek-2027-01"
    bad = _cli("postgresql://unused@127.0.0.1:1/none", tmp_path, "keys", "generate", "--id", "no spaces allowed")
    assert bad.returncode == 2 and "key id" in bad.stdout
