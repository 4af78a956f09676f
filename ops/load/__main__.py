"""``python -m ops.load``: two instances behind nginx on loopback, the airport-day simulator through
nginx, and faults during the run: one instance killed with -9 and restarted, PostgreSQL restarted.

Reports (and prints as the last line, in JSON): lost acknowledged enrolments, wrong-person
accepts, touchpoint requests left unanswered (anything but a decision, 503 or 429), and the seconds
each fault took to recover to ready. Everything runs on 127.0.0.1 (embedded PostgreSQL in a
temporary folder, free ports) and stops by itself. Exit status 0 when every target is met.

Faults are triggered by the day's progress, read from PostgreSQL, so they land in real traffic on
any machine: the kill once a share of the passengers has enrolled (kiosks and e-channels busy), the
PostgreSQL restart once the touchpoints have made as many decisions as there are passengers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from flighttoken.crypto.keys import load_or_create_key_file
from flighttoken.db.embedded import EmbeddedPostgres
from ops.load.check import lost_enrolments
from ops.load.stack import METRICS_TOKEN, ROOT, Instance, free_ports, instance_env, start_nginx

READY_TIMEOUT_S = 120
RECOVERY_TARGET_S = 15.0
# Touchpoint answers that count as answered: a decision, or a refusal the device knows to retry.
ANSWERED = frozenset({"200", "503", "429"})


def say(*parts: object) -> None:
    print("load:", *parts, file=sys.stderr, flush=True)


async def _count(dsn: str, table: str) -> int | None:
    try:
        conn = await asyncpg.connect(dsn, timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        return await conn.fetchval(f"SELECT count(*) FROM {table}")  # table names are ours
    except asyncpg.PostgresError:
        return None  # not migrated yet
    finally:
        await conn.close()


async def _reached(dsn: str, table: str, target: int, deadline_s: float, started: float) -> int:
    """Wait until ``table`` holds ``target`` rows (or the deadline passes); returns the count seen."""
    seen = 0
    while time.monotonic() - started < deadline_s:
        seen = await _count(dsn, table) or seen
        if seen >= target:
            break
        await asyncio.sleep(0.5)
    return seen


async def _watch_readiness(instances: list[Instance], seen_down: list[bool], stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=1) as client:
        while not stop.is_set():
            for i, instance in enumerate(instances):
                if not await instance.is_ready(client):
                    seen_down[i] = True
            await asyncio.sleep(0.2)


async def _chaos(instances: list[Instance], db: EmbeddedPostgres, dsn: str, args: argparse.Namespace,
                 started: float, events: list[dict[str, Any]]) -> None:
    def at() -> float:
        return round(time.monotonic() - started, 1)

    tokens = await _reached(dsn, "tokens", int(args.passengers * args.kill_at_share), args.kill_by_s, started)
    victim = instances[0]
    say(f"t={at()}s: kill -9 the instance on {victim.port} ({tokens} tokens enrolled)")
    fault = {"fault": "instance_kill_9", "at_s": at(), "tokens_enrolled_before": tokens}
    victim.kill9()
    victim.start()
    ready = await victim.wait_ready(READY_TIMEOUT_S)
    fault["recovered_to_ready_s"] = round(ready, 2) if ready is not None else None
    events.append(fault)
    say(f"t={at()}s: restarted instance ready after {fault['recovered_to_ready_s']} s")

    await asyncio.sleep(args.pg_gap_s)
    decisions = await _reached(dsn, "journey_events", args.pg_at_events or args.passengers, args.pg_restart_by_s,
                               started)
    say(f"t={at()}s: restart PostgreSQL ({decisions} journey events)")
    fault = {"fault": "postgresql_restart", "at_s": at(), "journey_events_before": decisions}
    seen_down, stop = [False] * len(instances), asyncio.Event()
    watcher = asyncio.create_task(_watch_readiness(instances, seen_down, stop))
    t0 = time.monotonic()
    await asyncio.to_thread(db.stop)
    await asyncio.sleep(args.pg_down_s)  # long enough for requests to meet the outage
    await asyncio.to_thread(db.start)
    up = time.monotonic()
    waits = await asyncio.gather(*(i.wait_ready(READY_TIMEOUT_S) for i in instances))
    stop.set()
    await watcher
    ready = [w for w in waits if w is not None]
    fault.update(outage_s=round(up - t0, 2), instances_saw_outage=seen_down,
                 per_instance_ready_s=[round(w, 2) if w is not None else None for w in waits],
                 recovered_to_ready_s=round(max(ready), 2) if len(ready) == len(waits) else None,
                 fault_to_ready_s=round(time.monotonic() - t0, 2) if None not in waits else None)
    events.append(fault)
    say(f"t={at()}s: PostgreSQL back after {fault['outage_s']} s; both instances ready "
        f"{fault['recovered_to_ready_s']} s later")


def _shed(metrics: str) -> int:
    for line in metrics.splitlines():
        if line.startswith("flighttoken_engine_shed_total "):
            return int(float(line.split()[1]))
    return 0


def _result(args: argparse.Namespace, report: dict[str, Any], ack: dict[str, Any], lost: dict[str, Any],
            faults: list[dict[str, Any]], shed: list[int], duration: float, sim_status: int) -> dict[str, Any]:
    by_status = ack["requests_by_status"]
    identify = by_status.get("identify", {})
    unanswered = sum(n for s, n in identify.items() if s == "0")
    unexpected = {s: n for s, n in identify.items() if s not in ANSWERED and s != "0"}
    expected_faults = {"instance_kill_9", "postgresql_restart"}
    recoveries = [f.get("recovered_to_ready_s") for f in faults]
    result = {
        "bench": "load_chaos", "flights": args.flights, "passengers": args.passengers, "duration_s": round(duration, 1),
        "acknowledged_enrolments": len(ack["enrolments"]), "lost_acknowledged_enrolments": lost["lost"],
        "wrong_person_accepts": report["accuracy"]["wrong_person_accepts"],
        "touchpoint_requests": sum(identify.values()), "unanswered_touchpoint_requests": unanswered,
        "touchpoint_answers_other_than_decision_503_429": unexpected,
        "answers_by_status": by_status, "slowest_answer_s": ack["slowest_answer_s"],
        "engine_shed_503": sum(shed),
        "faults": faults,
        "max_recovery_to_ready_s": max((r for r in recoveries if r is not None), default=None),
        "lost_check": lost,
        "passenger_outcomes": report["passenger_outcomes"],
        "simulator": {"exit": sim_status, "failed_invariants": [k for k, ok in report["invariants"].items() if not ok],
                      "server_errors_or_no_answer": report["transport"]["server_errors_or_no_answer"],
                      "retries": report["transport"]["retries"]},
        "machine": {"cpus": os.cpu_count(), "loadavg_1_5_15_after": [round(x, 2) for x in os.getloadavg()]},
    }
    result["targets_met"] = (
        lost["lost"] == 0 and result["wrong_person_accepts"] == 0 and unanswered == 0 and not unexpected
        and {f["fault"] for f in faults} == expected_faults
        and all(r is not None and r <= RECOVERY_TARGET_S for r in recoveries))
    return result


async def main(args: argparse.Namespace) -> int:
    if shutil.which("nginx") is None:
        say("needs nginx (Debian: apt-get install nginx-light)")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ft-load-"))
    say(f"working files (logs, simulator report) in {tmp}")
    db = EmbeddedPostgres(tmp / "db")
    dsn = await asyncio.to_thread(db.start)
    key_file = tmp / "master.key"
    load_or_create_key_file(key_file)
    *ports, proxy_port = free_ports(3)
    # Two instances share the machine: each gets half the cores for onnxruntime. Many passengers use
    # few simulated device keys, so the per-key rate limit is lifted.
    per_instance = str(max(1, (os.cpu_count() or 2) // 2))
    instances = [Instance(port, instance_env(dsn, key_file, port, tmp, engine_threads=per_instance,
                                             rate_limit_per_second="1000"), tmp / f"instance-{port}.log")
                 for port in ports]
    nginx = sim = None
    ok = False
    try:
        instances[0].start()
        if await instances[0].wait_ready(READY_TIMEOUT_S) is None:  # the first one migrates the database
            raise RuntimeError(f"instance on {ports[0]} did not become ready; see {instances[0].log}")
        instances[1].start()
        if await instances[1].wait_ready(READY_TIMEOUT_S) is None:
            raise RuntimeError(f"instance on {ports[1]} did not become ready; see {instances[1].log}")
        nginx = await start_nginx(tmp, ports, proxy_port)
        say(f"instances on {ports}, nginx on {proxy_port}; simulating {args.flights} flights, "
            f"{args.passengers} passengers")
        ack_file = tmp / "acknowledged.json"
        started = time.monotonic()
        with (tmp / "simulator.log").open("wb") as sim_log:
            sim = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "touchpoints", "simulate", "--url", f"http://127.0.0.1:{proxy_port}",
                "--database-url", dsn, "--flights", str(args.flights), "--passengers", str(args.passengers),
                "--out", str(tmp / "simulation"), "--raw-seconds", "0", "--acknowledged-out", str(ack_file),
                "--arrival-rate", str(args.arrival_rate), *(["--faces-dir", args.faces_dir] if args.faces_dir else []),
                "--metrics-token", METRICS_TOKEN,
                stdout=sim_log, stderr=asyncio.subprocess.STDOUT, cwd=ROOT)
        faults: list[dict[str, Any]] = []
        chaos = asyncio.create_task(_chaos(instances, db, dsn, args, started, faults))
        sim_status = await asyncio.wait_for(sim.wait(), timeout=args.max_minutes * 60)
        duration = time.monotonic() - started
        if not chaos.done():
            say("the day ended before every fault was injected; the report says which were")
            chaos.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await chaos
        if not ack_file.exists():
            raise RuntimeError(f"the simulator wrote no results (exit {sim_status}); see {tmp / 'simulator.log'}")
        report = json.loads((tmp / "simulation" / "report.json").read_text())
        ack = json.loads(ack_file.read_text())
        shed = [_shed(await i.metrics()) for i in instances]
        lost = await lost_enrolments(dsn, ack["enrolments"])
        result = _result(args, report, ack, lost, faults, shed, duration, sim_status)
        (out / "load-report.json").write_text(json.dumps(result, indent=1) + "\n")
        ok = result["targets_met"]
        say(f"{'every target met' if ok else 'TARGETS NOT MET'}; report in {out / 'load-report.json'}")
        print(json.dumps(result, separators=(",", ":")))
        return 0 if ok else 1
    finally:
        if sim is not None and sim.returncode is None:
            sim.kill()
            await sim.wait()
        if nginx is not None:
            nginx.terminate()
            nginx.wait()
        for instance in instances:
            instance.stop()
        await asyncio.to_thread(db.stop)
        if ok and not args.keep_work:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            say(f"kept the working files in {tmp}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ops.load", description=(__doc__ or "").partition("\n")[0])
    p.add_argument("--flights", type=int, default=6)
    p.add_argument("--passengers", type=int, default=600)
    p.add_argument("--arrival-rate", type=float, default=8.0, help="passengers arriving per second (simulator)")
    p.add_argument("--kill-at-share", type=float, default=0.3,
                   help="kill instance 1 once this share of the passengers has a token")
    p.add_argument("--kill-by-s", type=float, default=90.0, help="...or this many seconds into the day")
    p.add_argument("--pg-gap-s", type=float, default=10.0,
                   help="at least this long between the restarted instance being ready and the PostgreSQL restart")
    p.add_argument("--pg-at-events", type=int, default=0,
                   help="restart PostgreSQL once there are this many journey events (default: as many as passengers)")
    p.add_argument("--pg-restart-by-s", type=float, default=240.0, help="...or this many seconds into the day")
    p.add_argument("--pg-down-s", type=float, default=3.0, help="how long PostgreSQL stays stopped")
    p.add_argument("--faces-dir", help="folder holding lfw-train/ (default: the simulator's)")
    p.add_argument("--max-minutes", type=float, default=20.0)
    p.add_argument("--out", default=str(ROOT / "ops" / "results" / "load-chaos"),
                   help="where load-report.json goes")
    p.add_argument("--keep-work", action="store_true", help="keep logs and the simulator's report after a pass")
    return p.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse())))
