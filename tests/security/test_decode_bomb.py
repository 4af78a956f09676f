"""Decode bombs: a small PNG that declares a huge canvas (16-bit, palette) is refused from its header
with 413 image_too_large before any pixel is decoded, writes nothing, and a normal photo still works.

Why it mattered: a 6000x6000 16-bit PNG (under the 40 MP canvas limit) took ~0.7 s to decode against
~60 ms for a photo; five in one enrolment stalled a concurrent identify for seconds."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from flighttoken.faces.decode import ImageLimits, decode_image
from flighttoken.faces.errors import ImageTooLarge
from flighttoken.testing import identities, palette_bomb, png16_bomb, png_bytes
from tests.support import journey as j

BOMBS = {"png16-6000x6000": png16_bomb, "palette-6000x6000": palette_bomb}


@pytest.fixture(scope="module")
async def service(make_service):
    settings = make_service.settings()  # default limits
    async with make_service(settings) as svc:
        keys = await j.make_devices(svc.services.db())
        async with svc.client(keys["admin"]) as admin:
            flight = await j.create_flight(admin, "616", "23")
        people = identities(settings.faces_dir, min_photos=2)
        yield svc, keys, flight, people


async def _counts(svc) -> dict[str, int]:
    async with svc.services.db().acquire() as conn:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}")
                for t in ("tokens", "templates", "consents", "journey_events")}


def _too_large(r) -> None:
    assert r.status_code == 413, r.text[:300]
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == "image_too_large", body
    assert body["limit_pixels"] == 12_000_000


@pytest.mark.parametrize("make", list(BOMBS.values()), ids=list(BOMBS))
async def test_a_decode_bomb_at_identify_is_refused_from_its_header(service, make) -> None:
    svc, keys, _, _ = service
    bomb = make()
    assert len(bomb) < 1_000_000  # small on the wire: only its header says how big it is
    before = await _counts(svc)
    async with svc.client(keys["e_channel"]) as e_channel:
        _too_large(await e_channel.post("/v1/identify", content=bomb, headers={"Content-Type": "image/png"}))
        # Cut after a tenth of its pixel data, it is still refused for its size, not as truncated:
        # the decision is made on the header, before a row is inflated.
        _too_large(await e_channel.post("/v1/identify", content=bomb[: len(bomb) // 10],
                                        headers={"Content-Type": "image/png"}))
    assert await _counts(svc) == before


async def test_five_decode_bombs_in_one_enrolment_are_refused_and_enrol_nothing(service) -> None:
    svc, keys, flight, people = service
    bomb = base64.b64encode(png16_bomb()).decode()
    body = j.enrolment(people[0][1][0], flight["id"], document_number=j.document_number(61))
    body["captures"] = [bomb] * 5
    before = await _counts(svc)
    async with svc.client(keys["kiosk"]) as kiosk:
        _too_large(await kiosk.post("/v1/enrolments", json=body))
        assert await _counts(svc) == before
        # The same passenger with a real photo enrols, and is then identified from another.
        name, photos = people[0]
        ok = await kiosk.post("/v1/enrolments", json=j.enrolment(photos[0], flight["id"],
                                                                  document_number=j.document_number(61)))
        assert ok.status_code == 201, ok.text
    async with svc.client(keys["e_channel"]) as e_channel:
        decision = await j.identify(e_channel, photos[1])
    assert decision["token_id"] == ok.json()["token_id"], (name, decision)


def test_a_16_bit_photo_within_the_limit_decodes_like_its_8_bit_self(base_settings) -> None:
    """16-bit greyscale is kept cheap and right: its high byte, not Pillow's RGB conversion (which
    clipped every value above 255 to white), and a 16-bit canvas counts twice against the limit."""
    photo = identities(base_settings.faces_dir, min_photos=1)[0][1][0].read_bytes()
    grey8 = np.asarray(Image.open(io.BytesIO(photo)).convert("L"))
    grey16 = png_bytes(Image.fromarray(grey8.astype(np.uint16) * 257))
    limits = ImageLimits(max_bytes=10_000_000, max_pixels=40_000_000, decode_max_side=2048,
                         decode_max_pixels=grey8.size * 2)
    decoded, info = decode_image(grey16, limits)
    assert info.format == "png" and (info.width, info.height) == grey8.shape[::-1]
    assert np.abs(decoded.astype(int) - grey8[..., None].astype(int)).max() <= 1
    with pytest.raises(ImageTooLarge):  # one pixel fewer allowed than the 16-bit photo's double count
        decode_image(grey16, ImageLimits(max_bytes=10_000_000, max_pixels=40_000_000, decode_max_side=2048,
                                         decode_max_pixels=grey8.size * 2 - 1))
    decode_image(png_bytes(Image.fromarray(grey8)), ImageLimits(  # the 8-bit photo counts once
        max_bytes=10_000_000, max_pixels=40_000_000, decode_max_side=2048, decode_max_pixels=grey8.size))
