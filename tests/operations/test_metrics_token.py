"""/metrics is open by default (no personal data in it); with FLIGHTTOKEN_METRICS_TOKEN set, a
scraper must present that token, and an API key is no substitute."""

from __future__ import annotations

from flighttoken.devices.model import DeviceKind
from tests.operations.people import add_key


async def test_a_metrics_token_protects_the_scrape(make_service) -> None:
    async with make_service(metrics_token="scrape-me") as svc:
        admin_key = await add_key(svc, DeviceKind.ADMIN)
        async with svc.client() as anonymous, svc.client(admin_key) as admin, svc.client("scrape-me") as scraper:
            r = await anonymous.get("/metrics")
            assert (r.status_code, r.json()["code"]) == (401, "invalid_metrics_token")
            assert r.headers["www-authenticate"] == "Bearer"
            assert (await admin.get("/metrics")).status_code == 401
            r = await scraper.get("/metrics")
            assert r.status_code == 200 and "flighttoken_db_pool_max" in r.text
