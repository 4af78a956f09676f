"""The watchlist's cover, timed: do watchlist hits, random secondary referrals and proceeds take
the same time at the e-channel? (issue 17; part of ``make bench-watchlist``)

    .venv/bin/python -m ops.bench.watchlist --cover-only [--cover-hits 100] [--cover-others 260]
                                                         [--cover-share 0.4] [--cover-alpha 0.01]

The real service (uvicorn on loopback, in this process) over a scratch database: ``hits + others``
LFW identities enrolled on one flight (first photo, as enrolment stores it), the first ``hits`` of
them also on the watchlist through its API (the same photo); each passenger's second photo, on a
640x480 canvas, is its e-channel capture, checked beforehand to match its own token with margin.
``FLIGHTTOKEN_SECONDARY_REFERRAL_SHARE`` is set to ``--cover-share`` (explicit, bench only: enough
random referrals to compare in one run). Every passenger passes the e-channel once, in a random
order mixing the groups (so drift and the other load on the machine fall on all of them alike),
through a bare keep-alive HTTP/1.1 connection; each request is timed by the client, as anyone
watching a gate would time it. Each answer is put in a group by what the authority knows of it:
``see_officer`` with a ``watchlist`` alert (hit), with a ``random`` alert (random referral), and
``proceed``. Anything else (a probe that did not match after all) is counted and left out.

Printed: median / p95 per group, the ratio of each group's median to the proceeds' (the baseline,
measured in the same run), and the two-sample Kolmogorov-Smirnov statistic with its p-value for
each pair (``scipy.stats.ks_2samp``). Required: no pair differs at ``--cover-alpha``.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np
from scipy.stats import ks_2samp

from flighttoken.crypto.keys import MasterKey, generate_master_key
from flighttoken.db.keystore import KeyStore
from flighttoken.db.migrate import apply_migrations
from flighttoken.db.pool import create_pool
from flighttoken.decisions.match import decide_match, threshold_for
from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.faces.engine import FaceEngine
from flighttoken.galleries import Candidate, exact_top_k
from flighttoken.privacy.vault import TemplateVault
from flighttoken.settings import Settings
from flighttoken.testing import identities, run_service
from ops.bench.common import WindowSeeder, canvas_frame, err, percentiles_ms, quiet_logs, scratch_database
from ops.bench.identify import LeanClient

GROUPS = ("hit", "random", "proceed")


@dataclass
class Traveller:
    enrol_photo: Path
    enrolled: np.ndarray
    frame: bytes
    on_watchlist: bool = False


def choose(engine: FaceEngine, settings: Settings, n: int) -> list[Traveller]:
    """The first ``n`` LFW identities (by name) whose second photo, as a capture, matches their
    first among all chosen with the e-channel's threshold and margin. Only these photos are
    analysed (no LFW-wide template cache needed)."""
    chosen: list[Traveller] = []
    probes: list[np.ndarray] = []
    for _, photos in identities(settings.faces_dir, min_photos=2):
        if len(chosen) == int(n * 1.15) + 10:  # a few spare: some fail the joint check below
            break
        enrol = engine.analyse_sync(photos[0].read_bytes())
        frame = canvas_frame(photos[1])
        probe = engine.analyse_sync(frame)
        if enrol.template is None or probe.template is None or any(
                a.quality_failures or a.tailgating for a in (enrol, probe)):
            continue
        chosen.append(Traveller(photos[0], enrol.template.vector, frame))
        probes.append(probe.template.vector)
    gallery = np.stack([t.enrolled for t in chosen])
    threshold = threshold_for(settings, DeviceKind.E_CHANNEL, len(chosen))
    good = []
    for i, v in enumerate(probes):
        rows, scores = exact_top_k(gallery, v, 2)
        candidates = [Candidate(str(uuid.UUID(int=int(r))), float(s)) for r, s in zip(rows, scores, strict=True)]
        outcome = decide_match(candidates, threshold, settings.decisions.decision_margin)
        if outcome.reason == "matched" and int(rows[0]) == i:
            good.append(chosen[i])
    if len(good) < n:
        raise SystemExit(f"only {len(good)} LFW identities give a clean e-channel match; need {n}")
    return good[:n]


def _group(decision: dict, alert_kind: str | None) -> str | None:
    """hit / random / proceed, by the answer and the alert only the authority sees; None otherwise."""
    if decision["decision"] == "proceed" and alert_kind is None:
        return "proceed"
    if decision["reason"] == "see_officer":
        return {"watchlist": "hit", "random": "random"}.get(alert_kind or "")
    return None


def compare(samples: dict[str, list[float]], alpha: float) -> dict[str, Any]:
    stats = {g: percentiles_ms(samples[g]) for g in GROUPS}
    base = stats["proceed"]["median"]
    pairs = {}
    for a, b in combinations(GROUPS, 2):
        # scipy builds its result class at run time: pyright sees neither field.
        res: Any = ks_2samp(samples[a], samples[b])
        pairs[f"{a}_vs_{b}"] = {"ks": round(float(res.statistic), 4), "p": round(float(res.pvalue), 4),
                                "differs": bool(res.pvalue < alpha)}
    return {"ms": stats, "median_vs_proceed": {g: round(stats[g]["median"] / base, 3) for g in GROUPS},
            "ks_2samp": pairs, "alpha": alpha, "no_significant_difference": not any(p["differs"] for p in
                                                                                   pairs.values())}


async def run(settings: Settings, engine: FaceEngine, hits: int, others: int, share: float,
              alpha: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    travellers = choose(engine, settings, hits + others)
    for t in travellers[:hits]:
        t.on_watchlist = True
    err(f"cover: {len(travellers)} travellers ({hits} on the watchlist), chosen in {time.perf_counter() - t0:.0f} s")
    master = generate_master_key("kek-bench")
    async with scratch_database(settings) as dsn:
        s = settings.replace(database_url=dsn, master_key=master, secondary_referral_share=share,
                                    watchlist_touchpoints="e_channel")
        pool, keystore = await create_pool(dsn, s), await KeyStore.open(dsn, s)
        try:
            async with pool.acquire() as conn:
                await apply_migrations(conn)
                kiosk, _ = await add_device(conn, name="bench-kiosk", kind=DeviceKind.KIOSK)
                _, e_key = await add_device(conn, name="bench-e-channel", kind=DeviceKind.E_CHANNEL, terminal="T1")
                _, authority_key = await add_device(conn, name="bench-authority", kind=DeviceKind.AUTHORITY)
            seeder = WindowSeeder(pool, TemplateVault(MasterKey.parse(master), keystore), engine.model_id,
                                  kiosk.id, s.galleries.window_seconds)
            _, tokens = await seeder.flight(np.stack([t.enrolled for t in travellers]),
                                            datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=50))
        finally:
            await pool.close()
            await keystore.close()

        async with run_service(s, engine=engine) as svc:
            quiet_logs()
            async with httpx.AsyncClient(base_url=svc.base_url, timeout=60,
                                         headers={"Authorization": f"Bearer {authority_key}"}) as authority:
                for i, t in enumerate(travellers[:hits]):
                    r = await authority.post("/v1/watchlist/subjects", json={
                        "case_reference": f"BENCH/{i:04d}", "reason_code": "arrest_warrant", "added_by": "bench",
                        "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
                        "photos": [base64.b64encode(t.enrol_photo.read_bytes()).decode()]})
                    assert r.status_code == 201, r.text
            client = LeanClient(svc.base_url, e_key)
            order = list(range(len(travellers)))
            random.shuffle(order)
            # Warm-up (connections, prepared statements, arenas): a stranger, who changes no token.
            stranger = canvas_frame(identities(settings.faces_dir, min_photos=2)[-1][1][0])
            for _ in range(10):
                await client.post(stranger)
            timed: list[tuple[int, float, dict]] = []
            for i in order:
                started = time.perf_counter()
                status, body = await client.post(travellers[i].frame)
                elapsed = time.perf_counter() - started
                assert status == 200, body
                timed.append((i, elapsed, msgspec.json.decode(body)))
            await client.aclose()
            await asyncio.sleep(0.2)  # officers' streams: the publish tasks finish
            kinds = {r["token_id"]: r["kind"] for r in await svc.services.db().fetch(
                "SELECT token_id, kind FROM alerts WHERE touchpoint = 'e_channel'")}

    samples: dict[str, list[float]] = {g: [] for g in GROUPS}
    left_out: dict[str, int] = {}
    for i, elapsed, d in timed:
        group = _group(d, kinds.get(tokens[i]))
        if group is None:
            key = f"{'listed' if travellers[i].on_watchlist else 'not_listed'}:{d['reason']}"
            left_out[key] = left_out.get(key, 0) + 1
            continue
        samples[group].append(elapsed)
    out = compare(samples, alpha)
    out.update({"identifies": len(timed), "share": share, "left_out": left_out,
                "counts": {g: len(samples[g]) for g in GROUPS}, "seconds": round(time.perf_counter() - t0, 1)})
    for g in GROUPS:
        m = out["ms"][g]
        err(f"  {g:8s} n={m['n']:4d}  median {m['median']:7.2f} ms  p95 {m['p95']:7.2f} ms  "
            f"x{out['median_vs_proceed'][g]:.3f} of proceeds")
    for pair, r in out["ks_2samp"].items():
        err(f"  KS {pair:20s} D={r['ks']:.4f}  p={r['p']:.4f}" + ("  <- differs" if r["differs"] else ""))
    if left_out:
        err(f"  left out (not a clean match): {left_out}")
    return out
