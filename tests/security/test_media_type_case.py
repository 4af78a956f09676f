"""Media types are case-insensitive (RFC 9110 §8.3.1): a touchpoint sending ``IMAGE/JPEG`` or
``image/jpeg; charset=binary`` sends an image and gets a decision, not 415."""

from __future__ import annotations

import pytest

from flighttoken.testing import identities
from tests.support import journey as j


@pytest.fixture(scope="module")
async def service(make_service):
    settings = make_service.settings()
    async with make_service(settings) as svc:
        keys = await j.make_devices(svc.services.db())
        photo = identities(settings.faces_dir, min_photos=2)[0][1][0].read_bytes()
        yield svc, keys, photo


@pytest.mark.parametrize("content_type", ["IMAGE/JPEG", "Image/Jpeg", "image/jpeg; charset=binary",
                                          "IMAGE/JPEG ; q=1", "Application/Octet-Stream"])
async def test_an_upper_case_image_media_type_is_an_image(service, content_type) -> None:
    svc, keys, photo = service
    async with svc.client(keys["e_channel"]) as e_channel:
        r = await e_channel.post("/v1/identify", content=photo, headers={"Content-Type": content_type})
    assert r.status_code == 200, r.text
    assert r.json()["decision"] in ("proceed", "refer")
    assert r.json()["reason"] != "unsupported_media_type"


async def test_a_non_image_media_type_is_still_415(service) -> None:
    svc, keys, photo = service
    async with svc.client(keys["e_channel"]) as e_channel:
        r = await e_channel.post("/v1/identify", content=photo, headers={"Content-Type": "TEXT/PLAIN"})
    assert r.status_code == 415, r.text
    assert r.json()["code"] == "unsupported_media_type"
