"""End-to-end identify latency over HTTP against a 420-token flight, divided by the raw model time.

    .venv/bin/python -m ops.bench.identify [--iterations 200] [--callers 8] [--per-caller 10]

The real service (uvicorn on loopback, in this process, with the engine this script loads) over a
scratch database holding one boarding flight at gate 23: 420 LFW identities enrolled as enrolment
stores them (their first usable photo's template, sealed under the flight's key), all cleared by
immigration and lounge-eligible. Probes: each passenger's second photo on a 640x480 canvas, checked
beforehand to give the full decision path (face found, quality passed, matched with margin).

* gate, distinct passengers: one ``POST /v1/identify`` per passenger (each boards: proceed, the
  token update and the journey event; repeating a passenger would turn into ``already_boarded``),
  interleaved in random order with the raw model time of the same frame (the detector and
  recogniser ``session.run`` calls on that frame's exact tensors, same sessions and threads,
  nothing else) and with the engine alone (``engine.analyse``: decoding, detection, alignment,
  quality, embedding, thread hops). Reported: median / p95 / p99, the ratio of medians (target
  <= 1.15), the median of per-frame ratios, and the split: engine / raw (the face engine's own
  overhead) and e2e - engine (HTTP, database, gallery, decision); ``server_ms`` is the journey
  event's own latency (identify() only, no HTTP).
* lounge, one frame repeated: the same frame every time (lounge entries change no state, so every
  answer is proceed), against its raw time.
* throughput: ``--callers`` concurrent lounge clients over HTTP, against the engine alone
  (``engine.analyse``, same callers and frames, no HTTP or database), alternated over rounds.

The client runs in the same process and event loop as the server (on 2 cores, a client process
would take the same CPU), so its cost is inside the end-to-end figures: by default a bare
keep-alive HTTP/1.1 connection with a pre-built request head (a touchpoint is another machine;
its costs are not the service's), ``--client httpx`` for httpx (about 0.5-1 ms more). The service
logs as in production (info lines), to /dev/null. Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import numpy as np
import uvloop

from flighttoken import executor
from flighttoken.crypto.keys import MasterKey, generate_master_key
from flighttoken.db.keystore import KeyStore
from flighttoken.db.migrate import apply_migrations
from flighttoken.db.pool import create_pool
from flighttoken.decisions.match import decide_match
from flighttoken.devices.model import DeviceKind
from flighttoken.devices.registry import add_device
from flighttoken.faces.engine import FaceEngine
from flighttoken.flights.model import FlightState
from flighttoken.galleries import Candidate, exact_top_k
from flighttoken.logs import configure_logging
from flighttoken.privacy.vault import TemplateVault
from flighttoken.settings import Settings, load_settings
from flighttoken.testing import run_service
from ops.bench.common import (
    LfwTemplates,
    WindowSeeder,
    canvas_frame,
    err,
    lfw_templates,
    percentiles_ms,
    quiet_logs,
    scratch_database,
)
from ops.bench.engine import model_inputs

TARGET_RATIO = 1.15
RESERVED = 8  # passengers kept out of the gate run, for the lounge and throughput runs
KEEP_ALIVE_S = 2.0  # reuse a connection idle for less than this


class Passenger(msgspec.Struct):
    enrolled: np.ndarray  # the template stored at enrolment
    frame: bytes  # the probe capture
    name: str


def choose_passengers(lfw: LfwTemplates, engine: FaceEngine, settings: Settings, n: int) -> tuple[
        list[Passenger], list[int]]:
    """``n`` identities with a usable enrolment photo and a probe frame that passes the quality
    gates; returns them and the positions of those whose probe is matched (with margin) among them."""
    photos: dict[int, list[int]] = {}
    for i in np.flatnonzero(lfw.usable).tolist():
        photos.setdefault(int(lfw.identity[i]), []).append(i)
    chosen: list[Passenger] = []
    probe_vectors = []
    for ident, rows in sorted(photos.items()):
        if len(chosen) == n:
            break
        if len(rows) < 2:
            continue
        frame = canvas_frame(lfw.paths[rows[1]])
        a = engine.analyse_sync(frame)
        if a.template is None or a.quality_failures or a.tailgating:
            continue
        chosen.append(Passenger(lfw.vectors[rows[0]], frame, lfw.names[ident]))
        probe_vectors.append(a.template.vector)
    if len(chosen) < n:
        raise SystemExit(f"only {len(chosen)} LFW identities give a usable probe frame; need {n}")
    gallery = np.stack([p.enrolled for p in chosen])
    matched = []
    for i, v in enumerate(probe_vectors):
        rows, scores = exact_top_k(gallery, v, 2)
        outcome = decide_match([Candidate(str(uuid.UUID(int=int(r))), float(s)) for r, s in zip(rows, scores,
                                                                                                 strict=True)],
                               settings.decisions.gate_threshold, settings.decisions.decision_margin)
        if outcome.reason == "matched" and rows[0] == i:
            matched.append(i)
    return chosen, matched


def raw_runner(engine: FaceEngine, frame: bytes):
    det_blobs, rec_blob, _ = model_inputs(engine, frame)

    def raw() -> None:
        for blob in det_blobs:
            engine.detector.run(blob)
        engine.recognizer.run(rec_blob)

    return raw


class LeanClient:
    """One keep-alive HTTP/1.1 connection and a pre-built request head: a touchpoint's own costs
    (it is another machine) kept out of the figures. ``--client httpx`` measures with httpx."""

    def __init__(self, base_url: str, api_key: str) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self._addr = (host, int(port))
        self._head = (f"POST /v1/identify HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {api_key}"
                      "\r\nContent-Type: image/jpeg\r\nContent-Length: ").encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._used = 0.0

    async def post(self, frame: bytes) -> tuple[int, bytes]:
        if self._writer is not None and time.monotonic() - self._used > KEEP_ALIVE_S:
            await self.aclose()  # uvicorn drops idle connections after 5 s
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(*self._addr)
        self._used = time.monotonic()
        assert self._reader is not None
        self._writer.write(self._head + str(len(frame)).encode() + b"\r\n\r\n" + frame)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(int(v) for k, _, v in (ln.partition(":") for ln in lines[1:]) if k.lower() == "content-length")
        return int(lines[0].split()[1]), await self._reader.readexactly(length)

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._reader = self._writer = None


async def post(client: httpx.AsyncClient | LeanClient, frame: bytes) -> dict:
    if isinstance(client, LeanClient):
        status, body = await client.post(frame)
        assert status == 200, body
        return json.loads(body)
    r = await client.post("/v1/identify", content=frame, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    return r.json()


async def paired(client: httpx.AsyncClient | LeanClient, engine: FaceEngine, frames: list[bytes], raws: list,
                 expect: str) -> dict[str, Any]:
    """Per frame, in random order: the identify over HTTP, the raw model time, and (to show where
    the overhead is) the engine alone, ``engine.analyse``."""
    times: dict[str, list[float]] = {"http": [], "raw": [], "engine": []}
    decisions: dict[str, int] = {}
    for frame, run_raw in zip(frames, raws, strict=True):
        order = list(times)
        random.shuffle(order)
        for what in order:
            t0 = time.perf_counter()
            if what == "http":
                body = await post(client, frame)
                key = f"{body['decision']}/{body['reason']}"
                decisions[key] = decisions.get(key, 0) + 1
            elif what == "raw":
                run_raw()
            else:
                await engine.analyse(frame)
            times[what].append(time.perf_counter() - t0)
    e, r, g = (percentiles_ms(times[k]) for k in ("http", "raw", "engine"))
    e2e, raw = np.array(times["http"]), np.array(times["raw"])
    return {"e2e_ms": e, "raw_ms": r, "engine_ms": g, "ratio_median": round(e["median"] / r["median"], 3),
            "ratio_paired_median": round(float(np.median(e2e / raw)), 3),
            "engine_ratio_median": round(g["median"] / r["median"], 3),
            "service_over_engine_ms": round(e["median"] - g["median"], 3),
            "decisions": decisions, "full_path_share": round(decisions.get(expect, 0) / len(e2e), 4)}


async def throughput(callers: int, per_caller: int, frames: list[bytes], call) -> float:
    async def caller(j: int) -> None:
        for k in range(per_caller):
            await call(frames[(j + k) % len(frames)])

    t0 = time.perf_counter()
    await asyncio.gather(*(caller(j) for j in range(callers)))
    return callers * per_caller / (time.perf_counter() - t0)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    # Its concurrent callers are one lounge key standing in for many cameras: no per-device share
    # of the engine (FLIGHTTOKEN_ENGINE_DEVICE_SHARE / _RUNNING, issue 16) between them.
    settings = load_settings().replace(engine_device_share=1.0, engine_device_running=1024)
    # The service logs as in production (info: a decision line and an access line per request),
    # into the void: stdout carries only the result line, stderr the progress.
    configure_logging("json", settings.logging.log_level)
    quiet_logs()
    executor.configure()
    engine = FaceEngine.load(settings)  # the service's engine: the raw timings use its sessions
    lfw = lfw_templates(settings, use_cache=not args.no_cache)
    t0 = time.perf_counter()
    passengers, matched = choose_passengers(lfw, engine, settings, args.passengers)
    err(f"{len(passengers)} passengers, {len(matched)} probes give a full match; chosen in "
        f"{time.perf_counter() - t0:.0f} s")
    reserved, gate_run = matched[-RESERVED:], matched[:-RESERVED][: args.iterations]
    out: dict[str, object] = {"bench": "identify", "passengers": len(passengers), "full_match_probes": len(matched),
                              "client": args.client, "engine_threads": settings.models.engine_threads,
                              "batch_max_size": settings.engine.batch_max_size,
                              "cores": os.cpu_count(), "load_avg_start": [round(x, 2) for x in os.getloadavg()]}

    master = generate_master_key("kek-bench")
    async with scratch_database(settings) as dsn:
        # As deployed (production mode): a master key and a metrics token.
        s = settings.replace(database_url=dsn, master_key=master, metrics_token="bench")
        pool = await create_pool(dsn, s)
        keystore = await KeyStore.open(dsn, s)
        try:
            async with pool.acquire() as conn:
                await apply_migrations(conn)
                kiosk, _ = await add_device(conn, name="bench-kiosk", kind=DeviceKind.KIOSK)
                gate, gate_key = await add_device(conn, name="bench-gate-23", kind=DeviceKind.GATE, gate="23")
                _, lounge_key = await add_device(conn, name="bench-lounge", kind=DeviceKind.LOUNGE, lounge_id="L1")
            seeder = WindowSeeder(pool, TemplateVault(MasterKey.parse(master), keystore), engine.model_id,
                                  kiosk.id, s.galleries.window_seconds)
            await seeder.flight(np.stack([p.enrolled for p in passengers]),
                                datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=40), gate="23",
                                state=FlightState.BOARDING, token_state="immigration_cleared", lounge_eligible=True)
        finally:
            await pool.close()
            await keystore.close()

        async with run_service(s, engine=engine) as svc, svc.client(gate_key) as gate_h, \
                svc.client(lounge_key) as lounge_h:
            quiet_logs()
            if args.client == "lean":
                gate_c, lounge_c = LeanClient(svc.base_url, gate_key), LeanClient(svc.base_url, lounge_key)
            else:
                gate_c, lounge_c = gate_h, lounge_h
            sizes = svc.services.galleries.sizes()
            assert sizes["tokens"] == len(passengers), sizes
            lounge_frames = [passengers[i].frame for i in reserved]
            for frame in lounge_frames * 2:  # warm-up: arenas, connections, caches
                await post(lounge_c, frame)
                raw_runner(engine, frame)()

            frames = [passengers[i].frame for i in gate_run]
            raws = [raw_runner(engine, f) for f in frames]
            gate_res = await paired(gate_c, engine, frames, raws, "proceed/matched")
            server = await svc.services.db().fetch(
                "SELECT latency_ms FROM journey_events WHERE device_id = $1 ORDER BY id", gate.id)
            gate_res["server_ms"] = percentiles_ms([r["latency_ms"] / 1000 for r in server])
            out["gate_distinct"] = gate_res
            err(f"gate, {len(frames)} passengers: e2e {gate_res['e2e_ms']} raw {gate_res['raw_ms']} ratio "
                f"{gate_res['ratio_median']} (paired {gate_res['ratio_paired_median']}); engine alone "
                f"{gate_res['engine_ms']['median']} ms ({gate_res['engine_ratio_median']}x raw); server "
                f"{gate_res['server_ms']['median']} ms; decisions {gate_res['decisions']}")

            frame = lounge_frames[0]
            n = args.iterations
            lounge_res = await paired(lounge_c, engine, [frame] * n, [raw_runner(engine, frame)] * n,
                                      "proceed/matched")
            out["lounge_same_frame"] = lounge_res
            err(f"lounge, one frame x{args.iterations}: e2e {lounge_res['e2e_ms']} raw {lounge_res['raw_ms']} ratio "
                f"{lounge_res['ratio_median']} (paired {lounge_res['ratio_paired_median']}); "
                f"decisions {lounge_res['decisions']}")

            async def via_http(f: bytes) -> None:
                await post(lounge_h, f)  # httpx: a pool of connections for the concurrent callers

            async def engine_only(f: bytes) -> None:
                await engine.analyse(f)

            http_fps, eng_fps = [], []
            for rnd in range(args.rounds):
                pair = [("http", via_http), ("engine", engine_only)]
                if rnd % 2:
                    pair.reverse()
                for tag, call in pair:
                    fps = await throughput(args.callers, args.per_caller, lounge_frames, call)
                    (http_fps if tag == "http" else eng_fps).append(fps)
            h, e = float(np.median(http_fps)), float(np.median(eng_fps))
            out["throughput"] = {"callers": args.callers, "http_rps": round(h, 1), "engine_only_rps": round(e, 1),
                                 "ratio": round(h / e, 3), "http_rounds": [round(x, 1) for x in http_fps],
                                 "engine_rounds": [round(x, 1) for x in eng_fps]}
            err(f"throughput, {args.callers} callers: HTTP {h:.1f}/s, engine alone {e:.1f}/s, ratio {h / e:.2f}")
            for c in (gate_c, lounge_c):
                if isinstance(c, LeanClient):
                    await c.aclose()

    ratio = gate_res["ratio_median"]
    out["targets"] = {"ratio_max": TARGET_RATIO, "ratio": ratio, "ratio_met": ratio <= TARGET_RATIO,
                      "full_path_share": gate_res["full_path_share"]}
    out["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    ap.add_argument("--passengers", type=int, default=420, help="tokens on the flight")
    ap.add_argument("--iterations", type=int, default=200, help="sequential identifies per run (gate: distinct "
                    "passengers, at most the passengers with a full match)")
    ap.add_argument("--callers", type=int, default=8)
    ap.add_argument("--per-caller", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=4, help="alternating throughput rounds per mode")
    ap.add_argument("--client", choices=["lean", "httpx"], default="lean",
                    help="sequential runs' HTTP client: a bare keep-alive connection, or httpx")
    ap.add_argument("--no-cache", action="store_true", help="recompute the LFW templates")
    args = ap.parse_args(argv)
    result = uvloop.run(run(args))  # the loop the service runs on
    executor.shutdown()
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
