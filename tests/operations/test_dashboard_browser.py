"""The ops dashboard in headless Chromium (Debian's package, driven by Playwright): sign in with an
airline_ops key, watch a flight's boarded count rise as the gate boards passengers, without a reload.

The screenshot lands in artifacts/operations/ (gitignored) at a gate agent's tablet width.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from playwright.async_api import Page, ViewportSize, async_playwright

from flighttoken.devices.model import DeviceKind
from flighttoken.settings import CHECKOUT_ROOT
from tests.operations.people import add_key, candidates, enrol
from tests.support import journey as j

pytestmark = pytest.mark.slow

ARTIFACTS = Path(CHECKOUT_ROOT) / "artifacts" / "operations"
TABLET: ViewportSize = {"width": 800, "height": 1100}
N_PASSENGERS = 10
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str:
    # Fail, never skip: CI installs Debian's chromium (.ci/run); a downloaded browser is not allowed.
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise FileNotFoundError("Debian's chromium is not installed: apt-get install -y chromium")
    return path


@pytest.fixture(scope="module")
async def browser():
    with tempfile.TemporaryDirectory(prefix="ft-chromium-") as profile:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile, executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS, viewport=TABLET)
            try:
                yield context
            finally:
                await context.close()


async def _field(page: Page, flight_id: str, field: str) -> str:
    return await page.locator(f'[data-flight-id="{flight_id}"] [data-field="{field}"]').first.inner_text()


async def _wait_for_field(page: Page, flight_id: str, field: str, value: str) -> None:
    await page.wait_for_function(
        "([id, field, value]) => document.querySelector(`[data-flight-id=\"${id}\"] [data-field=\"${field}\"]`)"
        "?.textContent === value", arg=[flight_id, field, value], timeout=20_000)


async def _sign_in(page: Page, base_url: str, key: str) -> None:
    await page.goto(f"{base_url}/ops")
    await page.get_by_label("Ops or admin API key").fill(key)
    await page.get_by_role("button", name="Open dashboard").click()


async def test_the_boarded_count_rises_live_as_the_gate_boards(make_service, browser) -> None:
    settings = make_service.settings(ops_refresh_s=0.5, ops_timezone="Asia/Hong_Kong")
    async with make_service(settings) as svc:
        keys = await j.make_devices(svc.services.db())
        ops_key = await add_key(svc, DeviceKind.AIRLINE_OPS, airline="CX")
        async with svc.client(keys["admin"]) as admin, svc.client(keys["kiosk"]) as kiosk, \
                svc.client(keys["e_channel"]) as e_channel:
            departure = (await j.create_flight(admin, "1", "9"))["scheduled_departure"]  # another CX flight
            r = await admin.post("/v1/flights", json={"airline": "CX", "number": "884", "gate": "23",
                                                      "destination": "LAX", "booked": 14,
                                                      "scheduled_departure": departure})
            flight = r.json()
            people = candidates(settings.faces_dir)
            passengers = [await enrol(kiosk, people, flight["id"], 100 * (i + 1), e_channel)
                          for i in range(N_PASSENGERS)]
            assert (await admin.post(f"/v1/flights/{flight['id']}/boarding")).status_code == 200
            enrolled = (await admin.get(f"/v1/flights/{flight['id']}/progress")).json()["enrolled"]

        page = await browser.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        await _sign_in(page, svc.base_url, ops_key)
        await _wait_for_field(page, flight["id"], "boarded", "0")
        assert await _field(page, flight["id"], "enrolled") == str(enrolled)
        assert await _field(page, flight["id"], "expected") == "14"
        assert await _field(page, flight["id"], "immigration_cleared") == f"Cleared {N_PASSENGERS}"
        assert await page.locator("#scope").inner_text() == "CX flights"
        await page.evaluate("window.__stillTheSamePage = true")

        boarded = 0
        async with svc.client(keys["gate23"]) as gate:
            for group in (passengers[:3], passengers[3:7], passengers[7:]):
                for p in group:
                    d = await j.identify(gate, p.seen_photo)
                    if d["decision"] == "proceed":
                        assert d["token_id"] == p.token_id
                        boarded += 1
                await _wait_for_field(page, flight["id"], "boarded", str(boarded))
        assert boarded >= N_PASSENGERS - 1, boarded  # the same probe that cleared immigration
        assert await page.evaluate("window.__stillTheSamePage === true"), "the page reloaded"
        assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1
        bar = page.locator(f'[data-flight-id="{flight["id"]}"] [role="progressbar"]')
        assert await bar.get_attribute("aria-valuenow") == str(boarded)
        await page.wait_for_selector('[data-touchpoint="gate"]')
        assert "ms" in await page.locator('[data-touchpoint="gate"] [data-field="p95_ms"]').inner_text()

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "ops-dashboard-tablet.png"
        await page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert problems == []
        await page.close()


async def test_a_wrong_key_or_a_touchpoint_key_is_turned_away(make_service, browser) -> None:
    async with make_service() as svc:
        gate_key = await add_key(svc, DeviceKind.GATE, gate="5")
        page = await browser.new_page()
        await _sign_in(page, svc.base_url, "ftk_not-a-key")
        await page.wait_for_function("document.querySelector('#login-error').textContent.includes('not accepted')")
        await _sign_in(page, svc.base_url, gate_key)
        await page.wait_for_function("document.querySelector('#login-error').textContent.includes('ops or admin')")
        assert await page.locator("#dashboard").is_hidden()
        assert await page.evaluate("sessionStorage.length") == 0
        await page.close()
