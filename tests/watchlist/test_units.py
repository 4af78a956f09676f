"""Logic around the watchlist without a database or models: the gallery, the alert fan-out, the
screening decision (the face engine's analysis is faked here, as only these unit tests may)."""

from __future__ import annotations

import random
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from flighttoken.devices.model import Device, DeviceKind
from flighttoken.journey import cover
from flighttoken.settings import Settings, SettingsError, load_settings
from flighttoken.watchlist import screening
from flighttoken.watchlist.gallery import WatchlistGallery, WatchlistHit
from flighttoken.watchlist.hub import AlertHub
from flighttoken.watchlist.schemas import Alert, Location
from flighttoken.watchlist.state import WatchlistState

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
rng = np.random.default_rng(7)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def near(v: np.ndarray, noise: float) -> np.ndarray:
    return unit(v + noise * unit(rng.standard_normal(512)))


def alert(alert_id: int) -> Alert:
    return Alert(id=alert_id, kind="watchlist", at=NOW, subject_id=uuid.uuid4(), case_reference="C", reason_code="r",
                 device_id=uuid.uuid4(), device_name="d", touchpoint="e_channel", location=Location(), score=0.5,
                 token=None, status="open")


# ---- gallery -----------------------------------------------------------------------------------


async def test_gallery_scores_each_subject_by_its_best_photo_and_skips_the_expired() -> None:
    g = WatchlistGallery()
    a, b, c = (unit(rng.standard_normal(512)) for _ in range(3))
    sa, sb, sc = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await g.replace([(sa, 0, near(a, 2.0), NOW + timedelta(days=1)), (sa, 1, a, NOW + timedelta(days=1)),
                     (sb, 0, b, NOW + timedelta(days=1)), (sc, 0, c, NOW - timedelta(seconds=1))])
    hits = await g.search(a, NOW)
    assert hits[0].subject_id == sa and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert len({h.subject_id for h in hits}) == len(hits), "one entry per subject"
    assert sc not in {h.subject_id for h in await g.search(c, NOW)}, "expired: never a match"
    assert g.expired(NOW) == [sc]
    await g.remove([sa])
    assert sa not in {h.subject_id for h in await g.search(a, NOW)}
    assert len(g) == 2


async def test_an_empty_gallery_searches_to_nothing() -> None:
    assert await WatchlistGallery().search(unit(rng.standard_normal(512)), NOW) == []


async def test_adding_after_a_replace_keeps_both() -> None:
    g = WatchlistGallery()
    a, b = unit(rng.standard_normal(512)), unit(rng.standard_normal(512))
    sa, sb = uuid.uuid4(), uuid.uuid4()
    await g.replace([(sa, 0, a, NOW + timedelta(days=1))])
    await g.add(sb, [(0, b)], NOW + timedelta(days=1))
    assert (await g.search(b, NOW))[0].subject_id == sb
    assert (await g.search(a, NOW))[0].subject_id == sa


# ---- hub ---------------------------------------------------------------------------------------


def test_hub_fans_out_each_alert_once() -> None:
    hub = AlertHub()
    with hub.subscribe() as one, hub.subscribe() as two:
        assert hub.publish(alert(1)) and not hub.publish(alert(1))
        assert one.queue.qsize() == two.queue.qsize() == 1
    assert hub.subscribers == 0


def test_a_slow_subscriber_is_cut_off_not_waited_for() -> None:
    hub = AlertHub(queue_size=2)
    with hub.subscribe() as slow:
        for i in range(3):
            hub.publish(alert(i))
        assert slow.lagged and slow.queue.qsize() == 2


def test_closing_the_hub_ends_every_stream() -> None:
    hub = AlertHub()
    with hub.subscribe() as sub:
        hub.close()
        assert sub.queue.get_nowait() is None


# ---- screening ---------------------------------------------------------------------------------


@dataclass
class FakeTemplate:
    vector: np.ndarray


@dataclass
class FakeAnalysis:
    template: FakeTemplate | None
    quality_failures: list[str] = field(default_factory=list)


@dataclass
class FakeServices:
    settings: object
    watchlist: WatchlistState = field(default_factory=WatchlistState)


@pytest.fixture
async def wanted(monkeypatch):
    """Fake services with one subject on the watchlist; kiosk referrals are recorded, not stored."""
    raised = []

    async def raise_alert(services, device, kind, subject_id, score, token_id):
        raised.append((device.kind, kind, subject_id, None if score is None else round(score, 3), token_id))
        return len(raised) if kind else None

    monkeypatch.setattr(cover.alerts, "raise_alert", raise_alert)
    settings = load_settings().replace(watchlist_touchpoints="e_channel,gate",
                                       secondary_referral_share=0.0)
    services = FakeServices(settings)
    face = unit(rng.standard_normal(512))
    subject = uuid.uuid4()
    await services.watchlist.gallery.replace([(subject, 0, face, datetime.now(UTC) + timedelta(days=1))])
    return services, face, subject, raised


def device(kind: DeviceKind) -> Device:
    return Device(id=uuid.uuid4(), name="d", kind=kind, terminal="T1")


async def test_a_screened_capture_finds_the_subject(wanted) -> None:
    services, face, subject, _ = wanted
    hit = await screening.screen(services, device(DeviceKind.E_CHANNEL), FakeAnalysis(FakeTemplate(face)))
    assert hit is not None and hit.subject_id == subject and hit.score == pytest.approx(1.0, abs=1e-5)


async def test_below_the_threshold_there_is_no_hit(wanted) -> None:
    services, _, _, _ = wanted
    stranger = unit(rng.standard_normal(512))
    assert await screening.screen(services, device(DeviceKind.E_CHANNEL), FakeAnalysis(FakeTemplate(stranger))) is None


async def test_unlisted_kinds_and_faceless_captures_are_not_screened(wanted) -> None:
    services, face, _, _ = wanted
    assert await screening.screen(services, device(DeviceKind.LOUNGE), FakeAnalysis(FakeTemplate(face))) is None
    assert await screening.screen(services, device(DeviceKind.E_CHANNEL), FakeAnalysis(None, ["no_face"])) is None


def test_every_hit_is_referred_and_a_random_pick_only_when_it_would_proceed() -> None:
    hit = WatchlistHit(uuid.uuid4(), 0.6)
    assert cover.referral(hit, True, False) == cover.referral(hit, False, False) == "watchlist"
    assert cover.referral(hit, True, True) == "watchlist"
    assert cover.referral(None, True, True) == "random"
    assert cover.referral(None, False, True) is None and cover.referral(None, True, False) is None


async def test_kiosk_screening_only_when_listed(wanted) -> None:
    services, face, subject, raised = wanted
    token = uuid.uuid4()
    await cover.screen_enrolment(services, device(DeviceKind.KIOSK), face, token)
    assert raised == []
    services.settings = services.settings.replace(watchlist_touchpoints="kiosk")
    await cover.screen_enrolment(services, device(DeviceKind.KIOSK), face, token)
    # A clean enrolment runs the same write, with nothing to record (no extra round trip on a hit).
    await cover.screen_enrolment(services, device(DeviceKind.KIOSK), unit(rng.standard_normal(512)), token)
    assert raised == [(DeviceKind.KIOSK, "watchlist", subject, 1.0, token),
                      (DeviceKind.KIOSK, None, None, None, token)]


# ---- the random share (issue 17) ----------------------------------------------------------------


def test_the_random_share_is_never_zero_unless_set() -> None:
    assert load_settings({}).watchlist.secondary_referral_share > 0
    assert Settings().watchlist.secondary_referral_share > 0
    assert load_settings({"FLIGHTTOKEN_SECONDARY_REFERRAL_SHARE": "0"}).watchlist.secondary_referral_share == 0
    for bad in ("", "-0.01", "1.5", "one percent"):
        with pytest.raises(SettingsError, match="FLIGHTTOKEN_SECONDARY_REFERRAL_SHARE"):
            load_settings({"FLIGHTTOKEN_SECONDARY_REFERRAL_SHARE": bad})


@pytest.mark.parametrize("share", [0.01, 0.05, 0.2])
def test_a_share_p_refers_about_p_of_passengers(share: float) -> None:
    uniform = random.Random(20261203).random  # injected and seeded: the service uses secrets
    n = 40_000
    picked = sum(cover.drawn(share, uniform) for _ in range(n))
    sd = (n * share * (1 - share)) ** 0.5
    assert abs(picked - n * share) < 6 * sd, (picked, n * share)


def test_share_zero_refers_nobody_and_the_default_source_is_the_csprng() -> None:
    uniform = random.Random(1).random
    assert not any(cover.drawn(0.0, uniform) for _ in range(10_000))
    defaults = cover.drawn.__defaults__
    assert defaults is not None and defaults[0].__self__.__class__ is secrets.SystemRandom
    # The operating system's generator: on its own, share 0.5 picks some and not all of 200.
    assert 0 < sum(cover.drawn(0.5) for _ in range(200)) < 200


# ---- settings ----------------------------------------------------------------------------------


def test_watchlist_settings_are_validated() -> None:
    assert load_settings({}).watchlist.watchlist_touchpoints == "e_channel"
    assert load_settings({"FLIGHTTOKEN_WATCHLIST_TOUCHPOINTS": "e_channel, kiosk"}).watchlist.watchlist_touchpoints
    with pytest.raises(SettingsError, match="FLIGHTTOKEN_WATCHLIST_TOUCHPOINTS"):
        load_settings({"FLIGHTTOKEN_WATCHLIST_TOUCHPOINTS": "e_channel,admin"})
    with pytest.raises(SettingsError, match="FLIGHTTOKEN_WATCHLIST_THRESHOLD"):
        load_settings({"FLIGHTTOKEN_WATCHLIST_THRESHOLD": "1.5"})
