"""``python -m touchpoints simulate``: set up the devices, run the day, write the report and chart.

    python -m touchpoints simulate --url http://127.0.0.1:8000 --admin-key KEY \\
        --flights 20 --passengers 3000 --out ops/results/full

Writes ``report.json`` and ``day.png`` into ``--out``, prints a summary, and ends with the report's
headline figures as one line of JSON. Exit status 0 when every invariant holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from touchpoints.capabilities import Capabilities
from touchpoints.clients import AdminClient
from touchpoints.simulator import chart, dcs, devices, rawspeed
from touchpoints.simulator import dcs_report as dcs_report_mod
from touchpoints.simulator import report as report_mod
from touchpoints.simulator.baseline import RushBaseline
from touchpoints.simulator.features import Features
from touchpoints.simulator.journey_report import journey_headline, summary_lines
from touchpoints.simulator.recorder import Recorder, is_enrolment
from touchpoints.simulator.runner import Runner
from touchpoints.simulator.scenario import Options, Plan, ScenarioError, build_plan, load_identities
from touchpoints.transport import TouchpointError, Transport

RAW_SAMPLE = 48
RUSH_RAW_SECONDS = 6.0


def _default_faces_dir() -> str:
    env = os.environ.get("FLIGHTTOKEN_FACES_DIR")
    if env:
        return env
    return str(Path(__file__).resolve().parents[2].parent / "shared" / "faces")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("TOUCHPOINT_URL", "http://127.0.0.1:8000"))
    p.add_argument("--authority-url", default=os.environ.get("TOUCHPOINT_AUTHORITY_URL"),
                   help="the service's authority listener (FLIGHTTOKEN_AUTHORITY_PORT); without it no watchlist")
    keys = p.add_argument_group("device keys (see touchpoints/simulator/devices.py)")
    keys.add_argument("--admin-key", default=os.environ.get("TOUCHPOINT_ADMIN_KEY"),
                      help="an admin key: flights, and the simulator's own devices via the device API")
    keys.add_argument("--database-url", help="the service's PostgreSQL: create the devices there (and an admin "
                                             "key when none is given); also checks each purge in the database")
    keys.add_argument("--devices", type=Path, help="JSON file of ready-made device keys")
    keys.add_argument("--keep-devices", action="store_true", help="do not disable the devices afterwards")
    day = p.add_argument_group("the day")
    defaults = Options()
    for f in fields(Options):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        day.add_argument(flag, type=type(value), default=value, help=f"(default {value})")
    p.add_argument("--faces-dir", default=_default_faces_dir(), help="folder holding lfw-train/")
    p.add_argument("--out", type=Path, default=None, help="where report.json and day.png go")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request attempt")
    p.add_argument("--raw-seconds", type=float, default=6.0,
                   help="time spent measuring raw model throughput before and after the day (with a final "
                        "wave, also up to 6 s before it and every 15 s of its rush, the day paused); 0 skips")
    p.add_argument("--metrics-token", default=os.environ.get("TOUCHPOINT_METRICS_TOKEN"),
                   help="bearer token for the service's /metrics (FLIGHTTOKEN_METRICS_TOKEN), if it has one")
    p.add_argument("--saturation-level", type=int, default=4,
                   help="identify requests in flight at which the service counts as saturated")
    p.add_argument("--acknowledged-out", type=Path, default=None,
                   help="write JSON: every enrolment the service acknowledged (201/200: token id, booking "
                        "reference, flight id) and the final HTTP status of every request (ops/load checks "
                        "them against PostgreSQL)")


def options_from(args: argparse.Namespace) -> Options:
    return Options(**{f.name: getattr(args, f.name) for f in fields(Options)})


async def _raw(engine: Any, plan: Plan, seconds: float, when: str,
               service_cpu: Any = None, clock: Any = None) -> dict[str, Any] | None:
    """One raw model measurement, tagged ``when`` (day_start, wave_release, rush, rush_end,
    day_end). With ``service_cpu`` (a reader of the service's CPU seconds) it also records how busy
    the service was meanwhile: the measurement must have the machine to itself. With ``clock``
    (the day's), ``t_s`` is its midpoint on that clock."""
    if seconds <= 0 or engine is None:
        return None
    photos = [p.probes[0] for p in plan.passengers[:RAW_SAMPLE] if p.probes]
    data = [await asyncio.to_thread(path.read_bytes) for path in photos]
    before = await service_cpu() if service_cpu is not None else None
    if before is not None and abs(before - time.process_time()) <= 0.02 * max(before, 1.0):
        before = None  # the service runs in this process (tests): its CPU is the measurement's own
    t0, started = time.perf_counter(), clock() if clock is not None else None
    result = await asyncio.to_thread(rawspeed.measure, engine, data, seconds)
    after = await service_cpu() if service_cpu is not None and before is not None else None
    result["when"] = when
    if clock is not None:
        result["t_s"] = round((started + clock()) / 2, 2)
    result["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    if before is not None and after is not None:
        result["service_cpu_s_per_s"] = round((after - before) / (time.perf_counter() - t0), 3)
    return result


def _load_engine() -> Any:
    try:
        from flighttoken.faces.engine import FaceEngine
        from flighttoken.settings import load_settings

        # The engine logs a line on load; stdout is kept for the final JSON line.
        with contextlib.redirect_stdout(sys.stderr):
            return FaceEngine.load(load_settings())
    except Exception as exc:  # no models here: the ratio is reported as unavailable, the day still runs
        print(f"simulate: raw model throughput not measured ({type(exc).__name__}: {exc})", file=sys.stderr)
        return None


async def simulate(options: Options, *, url: str, faces_dir: str, authority_url: str | None = None,
                   admin_key: str | None = None,
                   database_url: str | None = None, devices_file: Path | None = None, out: Path | None = None,
                   engine: Any = None, raw_seconds: float = 6.0, saturation_level: int = 4,
                   request_timeout_s: float = 30.0, keep_devices: bool = False, metrics_token: str | None = None,
                   progress: bool = True, acknowledged_out: Path | None = None) -> dict[str, Any]:
    """Run one airport day and return its report (also written to ``out`` with the chart)."""
    plan = build_plan(load_identities(faces_dir), options)
    run_id = uuid.uuid4().hex[:6]
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if progress else (lambda *a: None)
    say(f"simulate: {len(plan.flights)} flights, {len(plan.passengers)} passengers, {len(plan.strangers)} "
        f"non-enrolled, {plan.banks} bank(s), gates {', '.join(plan.gates)}")
    n_devices = (options.kiosks + options.bag_drops + options.e_security_gates + options.e_channels
                 + options.lounge_readers + options.gate_readers * len(plan.gates))
    limits = httpx.Limits(max_connections=n_devices + 16, max_keepalive_connections=n_devices + 16)
    async with httpx.AsyncClient(limits=limits) as http:
        probe = Transport(url, admin_key, http=http, timeout=request_timeout_s)
        features = Features.detect(await Capabilities.load(probe))
        keys = await _provision(plan, url, http, features, run_id, admin_key, database_url, devices_file,
                                request_timeout_s)
        rec = Recorder()
        raw: list[dict[str, Any]] = []

        async def measure_in_the_rush(when: str) -> dict[str, Any] | None:
            # Shorter than the day's ends: the rush is paused while it runs.
            return await _raw(engine, plan, min(raw_seconds, RUSH_RAW_SECONDS), when,
                              _cpu_reader(features) if features.metrics is not None else None, rec.now)

        rush = RushBaseline(measure_in_the_rush, rec, saturation_level=saturation_level, say=say)
        runner = Runner(plan, url, keys, features, http=http, recorder=rec, dsn=database_url,
                        authority_url=authority_url, timeout=request_timeout_s,
                        before_wave=rush.at_wave if raw_seconds > 0 else None)
        receiver = dcs.Receiver(failure_share=options.dcs_failure_share, seed=options.seed)
        dcs_figures: dict[str, Any] = {}
        stack = contextlib.AsyncExitStack()
        try:
            await stack.enter_async_context(dcs.running(receiver))
            await dcs.register(receiver, runner.admin, {f.airline for f in plan.flights})
            say(f"simulate: DCS receiver at {receiver.url}, failing {options.dcs_failure_share:.0%} of deliveries")
            await features.detect_watchlist(runner.authority)
            await features.detect_metrics(Transport(url, metrics_token, http=http, timeout=request_timeout_s))
            say(f"simulate: devices from {keys.source}; capabilities {features.table()}")
            if engine is None and raw_seconds > 0:
                engine = await asyncio.to_thread(_load_engine)
            first = await _raw(engine, plan, raw_seconds, "day_start")
            raw += [first] if first else []
            say(f"simulate: raw model throughput {first['faces_per_s'] if first else 'not measured'} faces/s")
            started = datetime.now(UTC)
            load_before = os.getloadavg()
            rec.t0 = time.perf_counter()
            samplers = [asyncio.create_task(rec.sample())]
            if features.metrics is not None:
                samplers.append(asyncio.create_task(rec.sample_cpu(_cpu_reader(features))))
            if progress:
                samplers.append(asyncio.create_task(_progress(rec, say)))
            try:
                await runner.run()
            finally:
                await rush.stop()
                raw += rush.measurements
                for task in samplers:
                    task.cancel()
            if features.metrics is not None:
                last = await _cpu_reader(features)()
                if last is not None:
                    rec.cpu.append((rec.now(), last))
            duration = rec.now()
            load_after = os.getloadavg()
            after = await _raw(engine, plan, raw_seconds, "day_end")
            if after:
                raw.append(after)
            alerts = None
            if features.watchlist and runner.authority is not None:
                alerts = await runner._quietly(features.all_alerts(runner.authority))
            dcs_figures = await _settle_dcs(receiver, runner, options, say)
        finally:
            await stack.aclose()
            if not keep_devices:
                await runner._quietly(devices.retire(keys, runner.admin, database_url, features.devices_api))
    result = report_mod.DayResult(
        plan=plan, obs=rec.obs, samples=rec.samples, events=rec.events, cpu=rec.cpu, client_cpu=rec.client_cpu,
        flights=[{"code": f.plan.code, "bank": f.plan.bank, "gate": f.plan.gate, "facts": f.facts}
                 for f in runner.flights],
        outcomes=[p.outcome or "unfinished" for p in runner.people], features=features.table(),
        started_at=started.isoformat(timespec="seconds"), duration_s=duration, service=url, devices=keys.source,
        raw=raw, retries=runner.retries(), errors=runner.errors, opt_outs=runner.opt_out_results, alerts=alerts,
        watch_subjects=runner.watch_subjects, travellers=runner.travellers(), dcs=dcs_figures,
        alone_frames=runner.alone_frames,
        token_owner={str(p.token_id): i for i, p in enumerate(runner.people) if p.token_id},
        saturation_level=saturation_level, wave_held=runner.wave_held, pauses=rec.pauses,
        machine={"cpus": os.cpu_count(), "loadavg_1_5_15_before": [round(x, 2) for x in load_before],
                 "loadavg_1_5_15_after": [round(x, 2) for x in load_after]})
    report = report_mod.build(result)
    if acknowledged_out is not None:
        await asyncio.to_thread(_write_acknowledged, acknowledged_out, runner, rec)
    if out is not None:
        await asyncio.to_thread(_write, out, report, rec, [f.plan.code for f in runner.flights],
                                f"{len(plan.flights)} flights, {len(plan.passengers)} passengers, one instance")
        say(f"simulate: wrote {out / 'report.json'} and {out / 'day.png'}")
    return report


async def _settle_dcs(receiver: dcs.Receiver, runner: Runner, options: Options, say: Any) -> dict[str, Any]:
    """Wait for the service's outbox to deliver what the day must have produced (``dcs_drain_s`` at
    most), then read its dead letters and take the webhooks down."""
    expected = runner.dcs_expected()
    if not any(state == "registered" for state in receiver.registered.values()):
        return dcs_report_mod.build(receiver.deliveries, expected, registered=receiver.registered) | {
            "status": "not available"}
    say(f"simulate: waiting up to {options.dcs_drain_s:.0f} s for the DCS outbox to drain")
    waited = await dcs.drain(receiver, runner.dcs_targets(expected), options.dcs_drain_s)
    dead = await runner._quietly(runner.admin.get("/v1/dcs/dead-letters?limit=500"))
    await dcs.unregister(receiver, runner.admin)
    out = dcs_report_mod.build(receiver.deliveries, expected, registered=receiver.registered, drain_s=waited,
                               dead_letters=len(dead["events"]) if isinstance(dead, dict) else None,
                               failure_share=options.dcs_failure_share)
    return out | {"status": "available"}


def _write_acknowledged(path: Path, runner: Runner, rec: Recorder) -> None:
    """What the service promised (tokens it acknowledged) and how every request ended, for a check
    of the service's database after the run (``python -m ops.load``)."""
    enrolments = [{"token_id": str(me.token_id), "booking_reference": runner.plan.passengers[i].booking_reference,
                   "flight_id": str(runner.flights[runner.plan.passengers[i].flight].id)}
                  for i, me in enumerate(runner.people) if me.token_id is not None]
    by_status: dict[str, dict[str, int]] = {}
    for o in rec.obs:
        kind = by_status.setdefault("enrol" if is_enrolment(o) else "manual" if o.purpose == "manual" else "identify",
                                    {})
        kind[str(o.status)] = kind.get(str(o.status), 0) + 1
    slowest = max((o.done - o.sent for o in rec.obs), default=0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"enrolments": enrolments, "requests_by_status": by_status,
                                "slowest_answer_s": round(slowest, 2)}, indent=1) + "\n")


def _write(out: Path, report: dict[str, Any], rec: Recorder, flights: list[str], title: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    chart.draw(rec.obs, flights, rec.events, out / "day.png", title=title, pauses=rec.pauses)


async def _provision(plan: Plan, url: str, http: httpx.AsyncClient, features: Features, run_id: str,
                     admin_key: str | None, database_url: str | None, devices_file: Path | None,
                     request_timeout_s: float) -> devices.DeviceKeys:
    if devices_file is not None:
        keys = devices.from_file(devices_file)
    elif admin_key and features.devices_api:
        admin = AdminClient(url, admin_key, http=http, timeout=request_timeout_s)
        keys = await devices.via_api(admin, plan, run_id, admin_key, features.devices_api)
    elif database_url:
        keys = await devices.via_database(database_url, plan, run_id, admin_key)
    else:
        raise devices.ProvisioningError("give --admin-key (service with the device API), --database-url, or "
                                        "--devices FILE")
    keys.check(plan)
    return keys


def _cpu_reader(features: Features) -> Any:
    async def read() -> float | None:
        assert features.metrics is not None
        try:
            return await features.service_cpu_s(features.metrics)
        except TouchpointError:
            return None

    return read


async def _progress(rec: Recorder, say: Any, every_s: float = 30.0) -> None:
    while True:
        await asyncio.sleep(every_s)
        done = len(rec.obs)
        say(f"simulate: t={rec.now():.0f}s, {done} requests answered, in flight {rec.inflight}")


def headline(report: dict[str, Any]) -> dict[str, Any]:
    t, a = report["throughput"], report["accuracy"]
    lat = report["latency_ms"]
    return {"bench": "airport_day", "flights": report["simulation"]["flights"],
            "passengers": report["simulation"]["passengers"], "duration_s": report["simulation"]["duration_s"],
            "identify_per_s": t["identify_per_s_overall"], "sustained_identify_per_s": t["sustained_identify_per_s"],
            "raw_model_per_s": t["raw_model_per_s"], "ratio": t["ratio"], "ratio_basis": t["ratio_basis"],
            "ratio_vs_mean_raw": t["ratio_vs_mean_raw"], "target_met": t["target_met"],
            "p95_ms": {tp: lat[tp]["service_ms"].get("p95") for tp in lat},
            "fnir": a["fnir_overall"], "fnir_matching": a["fnir_matching_overall"], "fpir": a["fpir_overall"],
            "wrong_person_accepts": a["wrong_person_accepts"], "purge_complete": report["purge"]["complete"],
            "loadavg_before": report["simulation"]["machine"].get("loadavg_1_5_15_before"),
            **journey_headline(report), "ok": report["ok"]}


def run_command(args: argparse.Namespace) -> int:
    out = args.out or Path("ops/results") / datetime.now(UTC).strftime("sim-%Y%m%dT%H%M%S")
    try:
        report = asyncio.run(simulate(
            options_from(args), url=args.url, authority_url=args.authority_url, faces_dir=args.faces_dir,
            admin_key=args.admin_key,
            database_url=args.database_url, devices_file=args.devices, out=out, raw_seconds=args.raw_seconds,
            saturation_level=args.saturation_level, request_timeout_s=args.timeout, keep_devices=args.keep_devices,
            metrics_token=args.metrics_token, acknowledged_out=args.acknowledged_out))
    except (ScenarioError, devices.ProvisioningError, TouchpointError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    failed = [k for k, ok in report["invariants"].items() if not ok]
    for line in summary_lines(report):
        print(line, file=sys.stderr)
    print(f"simulate: {'all invariants hold' if not failed else 'FAILED: ' + ', '.join(failed)}", file=sys.stderr)
    print(json.dumps(headline(report), separators=(",", ":")))
    return 0 if not failed else 1
