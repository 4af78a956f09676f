"""No images, ever: a real `flighttoken serve` process at debug log level enrols (with chip photos),
identifies (JPEG and PNG), refuses a bad capture, opts a passenger out and purges a flight. Afterwards
no JPEG/PNG bytes, no slice of any uploaded photo and no plaintext template are found in its log, its
data and temp directories, any table of the database, or the database's own files and WAL."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

import asyncpg
import cv2
import httpx
import numpy as np

from flighttoken.crypto.keys import MasterKey, WrappedKey
from flighttoken.db.connection import Connection, one
from flighttoken.db.keystore import sibling_database
from flighttoken.db.migrate import apply_migrations
from flighttoken.privacy.vault import TemplateVault, flight_context
from flighttoken.settings import CHECKOUT_ROOT
from flighttoken.testing import free_port, identities
from tests.privacy.helpers import image_hits, scan_files, tables_containing, text_columns
from tests.support import journey as j

READY_WITHIN_S = 180
PASSENGERS = 10


def _png(photo: Path) -> bytes:
    image = cv2.imread(str(photo))
    assert image is not None, photo
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def _slices(image: bytes) -> list[bytes]:
    """Two 48-byte slices of compressed image data: unique to this photo, found only if it was kept."""
    return [image[len(image) // 3:len(image) // 3 + 48], image[-300:-252]]


def _start(tmp_path: Path, database_url: str, port: int, log: Path) -> subprocess.Popen:
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTTOKEN_") and k != "DATABASE_URL"}
    # Development mode: the test reads back the development master key the service creates in its data dir.
    env.update(DATABASE_URL=database_url, FLIGHTTOKEN_MODE="development",
               FLIGHTTOKEN_DATA_DIR=str(tmp_path / "data"), FLIGHTTOKEN_PORT=str(port),
               FLIGHTTOKEN_LOG_LEVEL="debug", FLIGHTTOKEN_LOG_FORMAT="json", TMPDIR=str(tmp_path / "tmp"))
    return subprocess.Popen([sys.executable, "-m", "flighttoken", "serve"], env=env, cwd=CHECKOUT_ROOT,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _wait_ready(proc: subprocess.Popen, port: int) -> None:
    started = time.monotonic()
    while time.monotonic() - started < READY_WITHIN_S:
        assert proc.poll() is None, "the service exited"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("service not ready")


async def _journey(base: str, keys: dict[str, str], faces_dir: str) -> tuple[list[bytes], str]:
    """Everything a day at the airport sends; returns the images uploaded and the flight id."""
    uploaded: list[bytes] = []
    people = identities(faces_dir, min_photos=3)[40:40 + PASSENGERS]

    def client(kind: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {keys[kind]}"}, timeout=60)

    async with client("admin") as admin:
        flight = await j.create_flight(admin, "777", "23")
    async with client("kiosk") as kiosk:
        for i, (_, photos) in enumerate(people):
            body = j.enrolment(photos[0], flight["id"], document_number=j.document_number(7000 + i))
            body["chip_photo"] = base64.b64encode(photos[2].read_bytes()).decode()
            uploaded += [photos[0].read_bytes(), photos[2].read_bytes()]
            assert (await kiosk.post("/v1/enrolments", json=body)).status_code in (201, 422)
        # A capture with no face in it is refused: its bytes must not be kept for "debugging" either.
        noise = cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 255, (240, 320, 3), np.uint8))[1].tobytes()
        uploaded.append(noise)
        r = await kiosk.post("/v1/enrolments", json=j.enrolment(noise, flight["id"], document_number="N0000001"))
        assert r.status_code == 422
        r = await kiosk.post("/v1/opt-outs", json={"booking_reference": "ABC" + j.document_number(7000)[-3:],
                                                   "document": {"type": "P", "number": j.document_number(7000),
                                                                "issuing_state": "HKG"}})
        assert r.status_code in (200, 404)
    for kind in ("e_channel", "lounge"):
        async with client(kind) as device:
            for _, photos in people:
                await j.identify(device, photos[1])
                uploaded.append(photos[1].read_bytes())
            png = _png(people[1][1][1])
            uploaded.append(png)
            r = await device.post("/v1/identify", content=png, headers={"Content-Type": "image/png"})
            assert r.status_code == 200
    return uploaded, flight["id"]


async def _a_plaintext_template(conn: Connection, data_dir: Path, database_url: str) -> bytes:
    """Decrypt one stored template with the service's (development) master key and its data key from
    the key store: the needle."""
    master = MasterKey.parse((data_dir / "master.key").read_text())
    row = one(await conn.fetchrow("SELECT token_id, flight_id, model_id, sealed FROM templates LIMIT 1"))
    keystore = await asyncpg.connect(sibling_database(database_url)[1])
    try:
        key = one(await keystore.fetchrow("SELECT kek_id, wrapped FROM flight_data_keys WHERE flight_id = $1",
                                          row["flight_id"]))
    finally:
        await keystore.close()
    dek = master.unwrap(WrappedKey(key["kek_id"], bytes(key["wrapped"])), flight_context(row["flight_id"]))
    return TemplateVault.open_template(dek, row["token_id"], row["model_id"], row["sealed"]).tobytes()


async def _database_files(conn: Connection, since: float) -> list[Path]:
    """This database's relation files, and WAL segments written during the test."""
    await conn.execute("CHECKPOINT")
    data = Path(cast(str, await conn.fetchval("SHOW data_directory")))
    oid = await conn.fetchval("SELECT oid FROM pg_database WHERE datname = current_database()")
    wal = [p for p in (data / "pg_wal").iterdir() if p.is_file() and p.stat().st_mtime >= since - 1]
    return [data / "base" / str(oid), *wal]


async def test_no_image_or_template_bytes_reach_logs_files_or_the_database(database_url, base_settings,
                                                                           tmp_path: Path) -> None:
    started = time.time()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await apply_migrations(conn)
        keys = await j.make_devices(pool)
    finally:
        await pool.close()
    port, log = free_port(), tmp_path / "service.log"
    proc = _start(tmp_path, database_url, port, log)
    try:
        _wait_ready(proc, port)
        uploaded, flight_id = await _journey(f"http://127.0.0.1:{port}", keys, base_settings.faces_dir)
        conn = await asyncpg.connect(database_url)
        try:
            template = await _a_plaintext_template(conn, tmp_path / "data", database_url)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                         headers={"Authorization": f"Bearer {keys['admin']}"}) as admin:
                for state in ("boarding", "departed"):
                    assert (await admin.post(f"/v1/flights/{flight_id}/state", json={"state": state})).is_success
        finally:
            await conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

    logged = log.read_bytes()
    assert b"token_enrolled" in logged and b"decision" in logged, "the log must have captured the run"
    slices = [s for image in uploaded for s in _slices(image)]
    assert scan_files([log, tmp_path / "data", tmp_path / "tmp"], [*slices, template]) == []

    conn = await asyncpg.connect(database_url)
    try:
        hits = []
        for table, column in await text_columns(conn):
            for signature in ("/9j/", "iVBORw0KGgo"):
                if await conn.fetchval(f'SELECT count(*) FROM "{table}" WHERE strpos("{column}"::text, $1) > 0',
                                       signature):
                    hits.append(f"{table}.{column} has {signature}")
        for needle in (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"):
            for found in await tables_containing(conn, needle, as_text=False):
                # Sealed blobs are random bytes: 3 bytes can occur inside; an image would *start* so.
                table, column = found.split(".")
                if await conn.fetchval(f'SELECT count(*) FROM "{table}" WHERE position($1::bytea in "{column}") = 1',
                                       needle):
                    hits.append(f"{found} starts with an image signature")
        for needle in [*slices[:20], template]:
            hits += await tables_containing(conn, needle, as_text=False)
        assert hits == []
        files = await _database_files(conn, started)
    finally:
        await conn.close()
    found = []
    for f in files:
        for path in ([f] if f.is_file() else [p for p in f.rglob("*") if p.is_file()]):
            data = path.read_bytes()
            found += [f"{path}: {h}" for h in image_hits(data)]
            if template in data:
                found.append(f"{path}: plaintext template")
    assert found == []


def test_no_code_path_writes_image_files() -> None:
    """Belt and braces: nothing in the service can write an image (or any file but the dev key)."""
    root = CHECKOUT_ROOT / "flighttoken"
    suspicious = ("imwrite", ".save(", "tofile(", "write_bytes(", "NamedTemporaryFile", "mkstemp")
    # flighttoken/testing.py is the tests' and benchmarks' helper (decode bombs built in memory), never
    # imported by the service (checked just below).
    service = [p for p in root.rglob("*.py") if p != root / "testing.py"]
    hits = [f"{p.relative_to(root)}: {s}" for p in service for s in suspicious if s in p.read_text()]
    importers = [str(p.relative_to(root)) for p in service if "flighttoken.testing" in p.read_text()]
    assert importers == []
    assert hits == []
