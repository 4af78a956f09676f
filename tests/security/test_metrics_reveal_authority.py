"""Attack: scrape the public /metrics to learn of authority routes and their use (issue 17, tell 2).

After the authority has used its API (subjects, alerts, a stream, a refused request) and its key
has been tried on the public listener, the public /metrics names no authority route, no authority
device kind and nothing of the watchlist; the authority listener's own /metrics has all of it.
"""

from __future__ import annotations

import re

import pytest

from tests.support import journey as j
from tests.watchlist.helpers import AlertStream, extra_keys

AUTHORITY_WORDS = re.compile(r"authority|watchlist|alert", re.IGNORECASE)


@pytest.fixture(scope="module")
async def svc_keys(make_service):
    async with make_service( authority=True) as svc:
        pool = svc.services.db()
        yield svc, {**await j.make_devices(pool), **await extra_keys(pool)}


async def test_the_public_metrics_hold_no_authority_word_after_authority_traffic(svc_keys) -> None:
    svc, keys = svc_keys
    async with svc.authority_client(keys["authority"]) as authority:
        assert (await authority.get("/v1/watchlist/subjects")).status_code == 200
        assert (await authority.post("/v1/watchlist/subjects", json={})).status_code == 400
        assert (await authority.get("/v1/alerts", params={"status": "all"})).status_code == 200
        assert (await authority.get("/v1/alerts/1")).status_code == 404
        async with AlertStream(authority):
            pass
    # The authority's key tried on the public listener, on its own paths and on others.
    async with svc.client(keys["authority"]) as misplaced:
        for path in ("/v1/alerts", "/v1/watchlist/subjects", "/v1/flights", "/v1/audit"):
            await misplaced.get(path)
    async with svc.client(keys["admin"]) as admin:
        assert (await admin.get("/v1/flights")).status_code == 200

    async with svc.client() as scraper:
        public = await scraper.get("/metrics")
    assert public.status_code == 200
    assert 'route="/v1/flights"' in public.text  # the scrape does count routed requests
    assert 'device_kind="authority"' not in public.text
    found = sorted({m.group(0).lower() for m in AUTHORITY_WORDS.finditer(public.text)})
    assert found == [], [line for line in public.text.splitlines() if AUTHORITY_WORDS.search(line)][:5]


async def test_authority_metrics_are_on_the_authority_listener(svc_keys) -> None:
    svc, keys = svc_keys
    async with svc.authority_client(keys["authority"]) as authority:
        assert (await authority.get("/v1/alerts")).status_code == 200
    async with svc.authority_client() as scraper:
        own = await scraper.get("/metrics")
    assert own.status_code == 200
    assert 'route="/v1/alerts"' in own.text and 'device_kind="authority"' in own.text
    assert "flighttoken_watchlist_subjects" in own.text
    # The passengers' state stays on the public listener.
    assert "flighttoken_gallery_faces" not in own.text
