"""Hostile and malformed input gets a clear 4xx problem with a stable code, and changes nothing."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from flighttoken.db.queries import devices as device_q
from flighttoken.testing import identities
from tests.support import journey as j


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge canvas: a decompression bomb's calling card."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


@pytest.fixture(scope="module")
async def hostile(make_service):
    settings = make_service.settings()
    async with make_service(settings) as svc:
        keys = await j.make_devices(svc.services.db())
        async with svc.client(keys["admin"]) as admin:
            flight = await j.create_flight(admin, "500", "23")
        photo = identities(settings.faces_dir, min_photos=2)[0][1][0]
        yield svc, keys, flight, photo


async def _row_counts(svc) -> dict[str, int]:
    async with svc.services.db().acquire() as conn:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in ("tokens", "templates", "consents")}


def _is_problem(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    if code:
        assert body["code"] == code, body
    return body


async def test_malformed_json_is_400_and_changes_nothing(hostile) -> None:
    svc, keys, _, _ = hostile
    before = await _row_counts(svc)
    async with svc.client(keys["kiosk"]) as kiosk:
        r = await kiosk.post("/v1/enrolments", content=b'{"document": {"type": "P",',
                             headers={"Content-Type": "application/json"})
    _is_problem(r, 400, "invalid_request")
    assert await _row_counts(svc) == before


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("document", "number"), 12345678),                      # wrong type
        (("booking", "lounge_eligible"), "yes"),                   # wrong type
        (("document", "number"), "9" * 500),                       # absurdly long
        (("booking", "seat"), 10**40),                             # huge number
        (("document", "surname"), "Chan\u0000"),                   # NUL: PostgreSQL text cannot hold it
        (("document", "expiry"), "2031-02-30"),                    # impossible date
        (("booking", "flight_id"), "'; DROP TABLE tokens; --"),    # not a uuid
    ],
)
async def test_bad_fields_are_400_naming_the_field(hostile, path, value) -> None:
    svc, keys, flight, photo = hostile
    body = j.enrolment(photo, flight["id"], document_number="H00000001")
    body[path[0]][path[1]] = value
    before = await _row_counts(svc)
    async with svc.client(keys["kiosk"]) as kiosk:
        r = await kiosk.post("/v1/enrolments", json=body)
    problem = _is_problem(r, 400, "invalid_request")
    assert path[1] in r.text
    assert await _row_counts(svc) == before, problem


async def test_unicode_and_sql_looking_names_are_stored_as_text(hostile) -> None:
    svc, keys, flight, photo = hostile
    body = j.enrolment(photo, flight["id"], document_number="H00000002", surname="陳'); DROP TABLE tokens;--")
    body["document"]["given_names"] = "Zoë Ñúñez-Ødegård"
    async with svc.client(keys["kiosk"]) as kiosk:
        r = await kiosk.post("/v1/enrolments", json=body)
    assert r.status_code == 201, r.text
    async with svc.services.db().acquire() as conn:
        row = await conn.fetchrow("SELECT surname, given_names FROM tokens WHERE id = $1::uuid", r.json()["token_id"])
    assert (row["surname"], row["given_names"]) == ("陳'); DROP TABLE tokens;--", "Zoë Ñúñez-Ødegård")


@pytest.mark.parametrize(
    ("image", "status", "code"),
    [
        (b"", 422, None),
        (b"not an image at all", 422, "image_not_decodable"),
        ("truncated", 422, "image_truncated"),
        (png_claiming(30_000, 30_000), 413, "image_too_large"),
        (b"GIF89a" + b"\0" * 64, 415, "image_unsupported_format"),
    ],
)
async def test_bad_images_at_a_touchpoint_are_4xx_with_a_code(hostile, image, status, code) -> None:
    svc, keys, _, photo = hostile
    if image == "truncated":
        image = Path(photo).read_bytes()[:2000]
    before = await _row_counts(svc)
    async with svc.client(keys["e_channel"]) as e_channel:
        r = await e_channel.post("/v1/identify", content=image, headers={"Content-Type": "image/jpeg"})
    body = _is_problem(r, status, code)
    assert body["code"]
    assert await _row_counts(svc) == before


async def test_a_frame_sent_as_the_wrong_media_type_is_415(hostile) -> None:
    svc, keys, _, photo = hostile
    async with svc.client(keys["gate23"]) as gate:
        r = await gate.post("/v1/identify", content=Path(photo).read_bytes(), headers={"Content-Type": "text/plain"})
    _is_problem(r, 415, "unsupported_media_type")


async def test_unknown_disabled_and_wrong_role_keys_are_refused(hostile) -> None:
    svc, keys, flight, photo = hostile
    async with svc.client("ftk_" + "A" * 43) as stranger:
        _is_problem(await stranger.get(f"/v1/flights/{flight['id']}"), 401, "invalid_api_key")
    async with svc.client() as anonymous:
        _is_problem(await anonymous.get(f"/v1/flights/{flight['id']}"), 401, "unauthenticated")
    async with svc.client(keys["kiosk"]) as kiosk:
        _is_problem(await kiosk.post("/v1/identify", content=Path(photo).read_bytes(),
                                     headers={"Content-Type": "image/jpeg"}), 403, "forbidden")
    async with svc.client(keys["gate23"]) as gate:
        _is_problem(await gate.post("/v1/flights", json={}), 403, "forbidden")
    # Disable the e-channel's key: refused as soon as the key cache entry lapses.
    async with svc.services.db().acquire() as conn:
        await conn.execute("UPDATE devices SET disabled_at = now() WHERE name = 'test-e_channel'")
    svc.services.key_cache.clear()
    async with svc.client(keys["e_channel"]) as e_channel:
        _is_problem(await e_channel.post("/v1/identify", content=Path(photo).read_bytes(),
                                         headers={"Content-Type": "image/jpeg"}), 401, "invalid_api_key")
    assert await device_q.by_name(svc.services.db(), "test-e_channel") is None
