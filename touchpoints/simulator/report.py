"""The simulator's report: throughput, latency, FNIR/FPIR, rule checks, purge, and invariants.

Pure functions of what was observed (:class:`DayResult`), so the same numbers can be recomputed and
tested without a service. Definitions:

* **FNIR** (per touchpoint): captures of enrolled passengers who should have been let through that
  got ``refer``, over all such captures. Also per transaction (after the retry a touchpoint
  allows), and split into capture problems and matching (``no_match``, ``ambiguous_match``).
* **FPIR**: captures of people not enrolled that got ``proceed``: people who never enrolled (at
  e-channels and gates), and departed passengers shown to an e-channel after their flight's purge.
* **Wrong-person accepts**: an enrolled passenger let through on a token that is not their own.
  Must be 0.
* **Sustained identify throughput**: identifies completed per second over the seconds in which the
  service was saturated with identifies only (at least ``saturation_level`` identify requests in
  flight at every sample, no enrolment in flight); with fewer than ``MIN_SATURATED_S`` such seconds,
  faces analysed per second over every saturated second (an enrolment carries one capture).
  Divided by the raw model throughput (:mod:`touchpoints.simulator.rawspeed`) measured in the same
  run; with a final wave, through its rush and matched to its seconds (:func:`raw_reference`):
  ``ratio``.
* **Client-adjusted ratio**: here the touchpoints (this simulator) run on the cores the service
  uses, which at an airport they never do; the raw figure was measured with the simulator idle.
  ``ratio_client_adjusted`` holds the sustained rate to the raw rate scaled to the cores the
  simulator left over in those same seconds: raw x (cores - simulator CPU-s per s) / cores.
  PostgreSQL's CPU stays counted against the service.
* **CPU ratio**: raw CPU per face over the service process's CPU per identify in those seconds;
  other work on the machine slows both but costs neither more CPU.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from touchpoints.models import CAPTURE_REASONS, MATCHING_REASONS
from touchpoints.simulator import journey_report as journey
from touchpoints.simulator.recorder import EXPECT_PROCEED, IDENTIFY_TOUCHPOINTS, Obs, is_enrolment, is_identify
from touchpoints.simulator.runner import PURGE_FAILURE_REASONS
from touchpoints.simulator.scenario import Plan

TARGET_RATIO = 0.85
MIN_SATURATED_S = 20
RUSH_TAGS = frozenset({"wave_release", "rush", "rush_end"})
BUSY_SERVICE_CPU = 0.1
"""CPU-seconds per second of the service (or of the rest of the machine) above which a raw
measurement was disturbed."""
# Searches by faces with no live token: the never-enrolled, and departed passengers after the purge.
NON_MATED = frozenset({"stranger", "purge_probe"})
# Purposes whose answer must be refer, and the invariant each one feeds.
MUST_REFER = {"wrong_gate": "wrong_gate_accepts", "stale_gate": "stale_gate_accepts",
              "double_board": "double_boarding_accepts", "lounge_first": "out_of_order_accepts",
              "opted_out": "opted_out_accepts", "watchlist": "watchlist_subject_accepts"}


@dataclass
class DayResult:
    plan: Plan
    obs: list[Obs]
    samples: list[tuple[float, int, int]]
    events: list[tuple[float, int, str]]
    flights: list[dict[str, Any]]
    """Per flight: code, gate, bank, passengers, facts (delay, gate change, progress, purge)."""
    outcomes: list[str]
    """Per passenger: boarded, manual, kiosk_refused, opted_out, watchlist, error."""
    features: dict[str, str]
    started_at: str
    duration_s: float
    service: str
    devices: str
    raw: list[dict[str, Any]] = field(default_factory=list)
    """Raw model throughput measurements: before the day, through the final wave's rush, after the day."""
    alone_frames: int = 0
    """Captures taken alone (frames.py) once a passenger's photos were used up."""
    retries: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    opt_outs: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] | None = None
    watch_subjects: dict[str, int] = field(default_factory=dict)
    token_owner: dict[str, int] = field(default_factory=dict)
    """token id → passenger index (for attributing watchlist alerts)."""
    saturation_level: int = 4
    cpu: list[tuple[float, float]] = field(default_factory=list)
    """(t, service process CPU seconds), from its /metrics."""
    client_cpu: list[tuple[float, float]] = field(default_factory=list)
    """(t, simulator process CPU seconds), sampled with ``cpu``."""
    machine: dict[str, Any] = field(default_factory=dict)
    """CPU count and load averages around the day: other work on the machine skews every rate."""
    wave_held: int = 0
    """Passengers held after check-in for the final wave (``--final-wave``)."""
    pauses: list[tuple[float, float]] = field(default_factory=list)
    """When the day was paused to time the bare models (simulator/baseline.py)."""
    travellers: list[journey.Traveller] = field(default_factory=list)
    """Each passenger's way through the day (outcome, boarding method, staff, fallback, roles)."""
    dcs: dict[str, Any] = field(default_factory=dict)
    """The DCS receiver's figures (touchpoints/simulator/dcs_report.py); empty when it did not run."""


def _pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    a = np.asarray(values)
    out: dict[str, float] = {"n": len(values)}
    for q in (50, 90, 95, 99):
        out[f"p{q}"] = round(float(np.percentile(a, q)), 1)
    out["max"] = round(float(a.max()), 1)
    return out


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def latency(obs: list[Obs]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tp in ("kiosk", *IDENTIFY_TOUCHPOINTS, "late_enrolment"):
        mine = [o for o in obs if o.status and (o.touchpoint == "kiosk" if tp == "kiosk" else
                                                o.purpose == "late_enrol" if tp == "late_enrolment" else
                                                o.touchpoint == tp and is_identify(o))]
        out[tp] = {"service_ms": _pct([o.latency_ms for o in mine]), "queue_ms": _pct([o.wait_ms for o in mine])}
    return out


def decisions(obs: list[Obs]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tp in IDENTIFY_TOUCHPOINTS:
        mine = [o for o in obs if o.touchpoint == tp and is_identify(o)]
        refer = Counter(o.reason for o in mine if o.outcome == "refer")
        out[tp] = {"requests": len(mine), "proceed": sum(o.outcome == "proceed" for o in mine),
                   "refer": dict(refer.most_common()),
                   "errors": dict(Counter(o.outcome for o in mine if o.outcome not in ("proceed", "refer")))}
    return out


def accuracy(obs: list[Obs]) -> dict[str, Any]:
    fnir: dict[str, Any] = {}
    all_mated = all_referred = all_matching = all_usable = 0
    for tp in IDENTIFY_TOUCHPOINTS:
        mated = [o for o in obs if o.touchpoint == tp and o.purpose in EXPECT_PROCEED and o.status == 200]
        referred = [o for o in mated if o.outcome == "refer"]
        reasons = Counter(o.reason for o in referred)
        capture = sum(n for r, n in reasons.items() if r in CAPTURE_REASONS)
        matching = sum(n for r, n in reasons.items() if r in MATCHING_REASONS)
        # Transactions: a passenger's visit, first capture and retries together.
        visits: dict[tuple[str, int], bool] = {}
        for o in mated:
            key = (o.who, o.flight)
            visits[key] = visits.get(key, False) or o.outcome == "proceed"
        fnir[tp] = {"captures": len(mated), "referred": len(referred), "fnir": _rate(len(referred), len(mated)),
                    "capture_problems": capture, "matching": matching,
                    "fnir_matching": _rate(matching, len(mated) - capture),
                    "other_reasons": {r: n for r, n in reasons.items()
                                      if r not in CAPTURE_REASONS and r not in MATCHING_REASONS},
                    "visits": len(visits), "visits_referred": sum(not ok for ok in visits.values()),
                    "fnir_visit": _rate(sum(not ok for ok in visits.values()), len(visits)),
                    "by_reason": dict(reasons.most_common())}
        all_mated += len(mated)
        all_referred += len(referred)
        all_matching += matching
        all_usable += len(mated) - capture
    fpir: dict[str, Any] = {}
    non_mated = [o for o in obs if o.purpose in NON_MATED and o.status == 200]
    groups = {"e_channel": ("stranger", "e_channel"), "gate": ("stranger", "gate"),
              "departed_passengers": ("purge_probe", "e_channel")}
    for name, (purpose, tp) in groups.items():
        mine = [o for o in non_mated if o.purpose == purpose and o.touchpoint == tp]
        accepted = sum(o.outcome == "proceed" for o in mine)
        fpir[name] = {"attempts": len(mine), "accepted": accepted, "fpir": _rate(accepted, len(mine)),
                      "refer": dict(Counter(o.reason for o in mine if o.outcome == "refer").most_common())}
    accepted = sum(o.outcome == "proceed" for o in non_mated)
    wrong = [o for o in obs if o.who.startswith("p") and o.purpose not in NON_MATED | {"opted_out"}
             and o.outcome == "proceed" and o.own_token is False]
    return {"fnir": fnir, "fnir_overall": _rate(all_referred, all_mated),
            "fnir_matching_overall": _rate(all_matching, all_usable),
            "fpir": fpir, "fpir_overall": _rate(accepted, len(non_mated)),
            "wrong_person_accepts": len(wrong),
            "wrong_person_examples": [f"{o.touchpoint}/{o.purpose}/{o.who}" for o in wrong[:10]]}


def rule_checks(obs: list[Obs]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for purpose, name in MUST_REFER.items():
        mine = [o for o in obs if o.purpose == purpose and o.status == 200]
        out[name] = {"attempts": len(mine), "accepted": sum(o.outcome == "proceed" for o in mine),
                     "reasons": dict(Counter(o.reason for o in mine).most_common())}
    repeats = [o for o in obs if o.purpose == "kiosk_repeat"]
    out["kiosk_repeat"] = {"attempts": len(repeats), "same_token": sum(o.own_token is True for o in repeats),
                           "mismatched": sum(o.own_token is False for o in repeats),
                           "statuses": dict(Counter(str(o.status) for o in repeats))}
    return out


def kiosk(obs: list[Obs]) -> dict[str, Any]:
    first = [o for o in obs if o.touchpoint == "kiosk" and o.purpose in ("enrol", "retake")]
    return {"requests": len(first), "created": sum(o.outcome == "created" for o in first),
            "existing": sum(o.outcome == "existing" for o in first),
            "retakes": sum(o.purpose == "retake" for o in first),
            "refused": dict(Counter(o.outcome for o in first if o.status >= 400).most_common()),
            "refused_reasons": dict(Counter(r for o in first if o.status >= 400 for r in o.reason.split(",") if r))}


def saturated_seconds(r: DayResult) -> tuple[list[int], list[int]]:
    """(seconds saturated with identifies only, seconds saturated with any face work)."""
    end = math.ceil(max((s[0] for s in r.samples), default=0))
    only_id = [True] * end
    any_sat = [True] * end
    seen = [False] * end
    for t, n_id, n_en in r.samples:
        k = int(t)
        if k >= end:
            continue
        seen[k] = True
        if n_id < r.saturation_level or n_en:
            only_id[k] = False
        if n_id + n_en < r.saturation_level:
            any_sat[k] = False
    return ([k for k in range(end) if seen[k] and only_id[k]], [k for k in range(end) if seen[k] and any_sat[k]])


def throughput(r: DayResult) -> dict[str, Any]:
    identify = [o for o in r.obs if is_identify(o) and o.status]
    enrol = [o for o in r.obs if is_enrolment(o) and o.status]
    duration = max(r.duration_s, 1e-9)
    id_secs, any_secs = saturated_seconds(r)
    done_id = Counter(int(o.done) for o in identify)
    done_en = Counter(int(o.done) for o in enrol)
    sustained = sum(done_id[k] for k in id_secs) / len(id_secs) if id_secs else None
    analyses = sum(done_id[k] + done_en[k] for k in any_secs) / len(any_secs) if any_secs else None
    basis_raw = raw_basis(r.raw)
    raw_mean = sum(m["faces_per_s"] for m in r.raw) / len(r.raw) if r.raw else None
    raw_best_any = max((m["faces_per_s"] for m in r.raw), default=None)
    basis, value, secs = None, None, []
    if sustained is not None and len(id_secs) >= MIN_SATURATED_S:
        basis, value, secs = "identify-only saturated seconds", sustained, id_secs
    elif analyses is not None:
        basis, value, secs = "all saturated seconds, identifies + enrolment captures", analyses, any_secs
    raw_ref, raw_how = raw_reference(basis_raw, "faces_per_s", secs, max)
    ratio = round(value / raw_ref, 3) if value and raw_ref else None
    cores = r.machine.get("cpus") or 0
    client = client_cpu_share(r, set(id_secs) if basis == "identify-only saturated seconds" else set(any_secs))
    adjusted = None
    if value and raw_ref and cores and client is not None and client < cores:
        adjusted = round(value / (raw_ref * (cores - client) / cores), 3)
    return {
        "identifies": len(identify), "enrolments": len(enrol),
        "identify_per_s_overall": round(len(identify) / duration, 2),
        "enrolment_per_s_overall": round(len(enrol) / duration, 2),
        "saturation_level": r.saturation_level,
        "sustained_identify_per_s": round(sustained, 2) if sustained is not None else None,
        "saturated_identify_only_s": len(id_secs),
        "sustained_analyses_per_s": round(analyses, 2) if analyses is not None else None,
        "saturated_s": len(any_secs),
        "raw_model_per_s": round(raw_ref, 2) if raw_ref else None, "raw_reference": raw_how,
        "raw_basis": [m.get("when", "unlabelled") for m in basis_raw],
        "raw_measurements": r.raw,
        "ratio": ratio, "ratio_basis": basis,
        "ratio_vs_mean_raw": round(value / raw_mean, 3) if value and raw_mean else None,
        "ratio_vs_best_raw_of_the_day": round(value / raw_best_any, 3) if value and raw_best_any else None,
        "simulator_cpu_s_per_s": round(client, 3) if client is not None else None, "cores": cores or None,
        "ratio_client_adjusted": adjusted,
        "target_ratio": TARGET_RATIO,
        "target_met": ratio is not None and ratio >= TARGET_RATIO,
        "target_met_client_adjusted": adjusted is not None and adjusted >= TARGET_RATIO,
        "cpu": cpu_cost(r, set(id_secs), identify, enrol),
    }


def raw_basis(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The raw measurements the ratio is held to. A shared machine's speed drifts over a day (by a
    fifth within minutes here), so with a final wave it is those taken through its identify-only
    rush, the day paused (simulator/baseline.py); without one, all of them. A measurement during
    which the service or anything else on the machine was busy never counts: it would understate
    raw and flatter the ratio."""
    quiet = [m for m in raw if max(m.get("service_cpu_s_per_s") or 0.0, m.get("other_cpu_s_per_s") or 0.0)
             <= BUSY_SERVICE_CPU] or raw
    return [m for m in quiet if m.get("when") in RUSH_TAGS and "t_s" in m] or quiet


def raw_reference(basis: list[dict[str, Any]], key: str, secs: list[int],
                  otherwise: Callable[[Iterable[float]], float]) -> tuple[float | None, str]:
    """(the raw figure ``key`` the rush is held to, how it was taken). Measurements on the day's
    clock are interpolated to each of ``secs`` and averaged: the machine's speed during those very
    seconds, as near as it was measured. Otherwise ``otherwise`` of them (the best)."""
    timed = sorted((m["t_s"], m[key]) for m in basis if "t_s" in m and key in m)
    if timed and secs and len(timed) == len(basis):
        at = np.interp(np.asarray(secs, float) + 0.5, [t for t, _ in timed], [v for _, v in timed])
        return float(at.mean()), "time-matched"
    values = [m[key] for m in basis if key in m]
    return (otherwise(values) if values else None), "best"


def client_cpu_share(r: DayResult, secs: set[int]) -> float | None:
    """The simulator's own CPU-seconds per second over the sampling intervals lying wholly in
    ``secs``; None when not sampled or no interval qualifies, or when the service runs inside the
    simulator's process (tests): both readings are then the same process's CPU."""
    if r.cpu and r.client_cpu and abs(r.cpu[0][1] - r.client_cpu[0][1]) <= 0.02 * max(r.cpu[0][1], 1.0):
        return None
    used = span = 0.0
    for (ta, ca), (tb, cb) in zip(r.client_cpu, r.client_cpu[1:], strict=False):
        if tb > ta and all(k in secs for k in range(int(ta), math.ceil(tb))):
            used += cb - ca
            span += tb - ta
    return used / span if span else None


def cpu_cost(r: DayResult, id_secs: set[int], identify: list[Obs], enrol: list[Obs]) -> dict[str, Any]:
    """CPU per identify in the service process against CPU per face of the bare models: a ratio
    that other work on the machine does not skew (it slows both, but costs neither more CPU).
    Conservative: PostgreSQL's CPU is not counted, and the service overlaps requests on both cores
    where the bare models may leave some idle."""
    if len(r.cpu) < 2:
        return {"status": "not measured (the service has no readable /metrics)"}
    raw_cpu, _ = raw_reference(raw_basis(r.raw), "cpu_ms_per_face", sorted(id_secs), min)
    raw_cpu = round(raw_cpu, 2) if raw_cpu else None
    (t_first, c_first), (t_last, c_last) = r.cpu[0], r.cpu[-1]
    analyses = sum(t_first < o.done <= t_last for o in (*identify, *enrol))
    per_analysis = (c_last - c_first) * 1000 / analyses if analyses else None
    cpu_s = count = 0.0
    for (ta, ca), (tb, cb) in zip(r.cpu, r.cpu[1:], strict=False):
        if all(k in id_secs for k in range(int(ta), math.ceil(tb))):
            cpu_s += cb - ca
            count += sum(ta < o.done <= tb for o in identify)
    per_identify = cpu_s * 1000 / count if count else None
    basis = per_identify if per_identify is not None else per_analysis
    return {"service_cpu_ms_per_identify": round(per_identify, 2) if per_identify else None,
            "identifies_priced": int(count),
            "service_cpu_ms_per_face_whole_day": round(per_analysis, 2) if per_analysis else None,
            "raw_cpu_ms_per_face": raw_cpu,
            "ratio_cpu": round(raw_cpu / basis, 3) if raw_cpu and basis else None,
            "ratio_cpu_basis": "identify-only saturated windows" if per_identify is not None else "whole day"}


def purge(r: DayResult) -> dict[str, Any]:
    probes = [o for o in r.obs if o.purpose == "purge_probe" and o.status == 200]
    recognised = [o for o in probes if o.reason in PURGE_FAILURE_REASONS]
    incomplete = []
    receipts = db_checked = 0
    for f in r.flights:
        p = (f.get("facts") or {}).get("purge") or {}
        rec, db = p.get("receipt", "unchecked"), p.get("database")
        if rec != "unchecked":
            receipts += 1
            if not rec or not rec.get("completed") or not rec.get("key_destroyed_at"):
                incomplete.append(f"{f['code']}: receipt {rec}")
        if db is not None:
            db_checked += 1
            if db["templates"] or db["flight_keys"] or db["live_tokens"]:
                incomplete.append(f"{f['code']}: left in the database {db}")
    departed = sum(1 for f in r.flights if (f.get("facts") or {}).get("purge") is not None)
    reused = sum(1 for p in r.plan.passengers if p.reuse and r.outcomes[p.index] != "kiosk_refused")
    return {"flights": len(r.flights), "departed_and_checked": departed, "receipts_checked": receipts,
            "database_checked": db_checked, "incomplete": incomplete,
            "probes": len(probes), "recognised_after_departure": len(recognised),
            "probe_reasons": dict(Counter(o.reason for o in probes).most_common()),
            "faces_reenrolled_after_purge": reused,
            "complete": departed == len(r.flights) and not incomplete and not recognised}


def watchlist(r: DayResult) -> dict[str, Any]:
    if r.features.get("watchlist") != "available":
        return {"status": r.features.get("watchlist", "not available")}
    subjects = set(r.watch_subjects)
    alerts = [a for a in r.alerts or [] if a["subject_id"] in subjects]  # this run's subjects only
    hit_subjects = {a["subject_id"] for a in alerts if a["subject_id"] in subjects}
    false_alarms = [a for a in alerts if a.get("token")
                    and r.token_owner.get(a["token"]["token_id"]) != r.watch_subjects[a["subject_id"]]]
    return {"status": "available", "subjects": len(subjects), "subjects_alerted": len(hit_subjects),
            "alerts": len(alerts), "false_alarms": len(false_alarms)}


def flights_table(r: DayResult) -> list[dict[str, Any]]:
    out = []
    first_board: dict[int, float] = {}
    departed: dict[int, float] = {}
    for t, f, what in r.events:
        if what == "boarding":
            first_board.setdefault(f, t)
        elif what == "departed":
            departed[f] = t
    for i, f in enumerate(r.flights):
        mine = [p.index for p in r.plan.passengers if p.flight == i]
        outcomes = Counter(r.outcomes[p] for p in mine)
        row = {"flight": f["code"], "bank": f["bank"], "gate": f["gate"], "passengers": len(mine),
               "outcomes": dict(outcomes),
               "boarding_s": round(departed[i] - first_board[i], 1) if i in departed and i in first_board else None}
        facts = f.get("facts") or {}
        for key in ("delay", "gate_change"):
            if key in facts:
                row[key] = facts[key]
        progress = facts.get("server_progress")
        if progress:
            row["server_boarded"] = progress.get("boarded")
            row["progress_agrees"] = progress.get("boarded") == outcomes.get("boarded", 0)
        out.append(row)
    return out


def features_used(r: DayResult) -> dict[str, Any]:
    delays = [f["facts"]["delay"] for f in r.flights if "delay" in (f.get("facts") or {})]
    gates = [f["facts"]["gate_change"] for f in r.flights if "gate_change" in (f.get("facts") or {})]
    return {
        "capabilities": r.features,
        "opt_outs": {"status": r.features.get("opt_out"), "done": len(r.opt_outs),
                     "tokens_revoked": sum(int(o.get("tokens_revoked", 0)) for o in r.opt_outs),
                     "failed": sum(1 for o in r.opt_outs if "error" in o)},
        "watchlist": watchlist(r),
        "delays": dict(Counter(delays)), "gate_changes": dict(Counter(gates)),
    }


def build(r: DayResult) -> dict[str, Any]:
    acc = accuracy(r.obs)
    rules = rule_checks(r.obs)
    pur = purge(r)
    tput = throughput(r)
    flights = flights_table(r)
    server_errors = [o for o in r.obs if o.status >= 500 or o.status == 0]
    outcomes = Counter(r.outcomes)
    wrong = journey.wrong_person(r.obs)
    journey_figures = {"clearance": journey.clearance(r.travellers),
                       "fallback": {**journey.fallback(r.travellers), "alone_retake_frames": r.alone_frames,
                                    "alone_crop": r.plan.options.alone_crop},
                       "wrong_person_accepts": wrong,
                       "boarding_throughput": journey.boarding_throughput(r.obs, r.flights,
                                                                         r.plan.options.gate_readers)}
    invariants = {
        "wrong_person_accepts_zero": acc["wrong_person_accepts"] == 0,
        "wrong_person_accepts_one_to_one_zero": wrong["one_to_one"] == 0 and wrong["impostor_passes"]["accepted"] == 0,
        **({"dcs_exactly_once": bool(r.dcs.get("exactly_once"))} if r.dcs.get("status") == "available" else {}),
        **{f"{name}_zero": rules[name]["accepted"] == 0 for name in MUST_REFER.values()},
        "kiosk_repeat_same_token": rules["kiosk_repeat"]["mismatched"] == 0,
        "purge_complete": pur["complete"],
        "no_server_errors": not server_errors,
        "no_failed_calls": not r.errors,
        "every_passenger_accounted": sum(outcomes.values()) == len(r.plan.passengers) and not outcomes.get("error"),
        "progress_agrees": all(f.get("progress_agrees", True) for f in flights),
    }
    return {
        "simulation": {"flights": len(r.plan.flights), "passengers": len(r.plan.passengers),
                       "non_enrolled": len(r.plan.strangers), "banks": r.plan.banks, "seed": r.plan.options.seed,
                       "arrival_rate_per_s": r.plan.options.arrival_rate, "started_at": r.started_at,
                       "duration_s": round(r.duration_s, 1), "service": r.service, "devices": r.devices,
                       "lfw": r.plan.pool_sizes, "machine": r.machine,
                       "final_wave": {"enabled": bool(r.plan.options.final_wave),
                                      "banks": min(r.plan.options.final_wave, r.plan.banks),
                                      "passengers_held": r.wave_held,
                                      "pauses_to_time_the_models": len(r.pauses),
                                      "paused_s": round(sum(b - a for a, b in r.pauses), 1)}},
        "throughput": tput,
        "latency_ms": latency(r.obs),
        "accuracy": acc,
        "decisions": decisions(r.obs),
        "kiosk": kiosk(r.obs),
        "passenger_outcomes": dict(outcomes),
        "journey": journey_figures,
        "dcs": r.dcs,
        "targets": {"cleared_without_officer": journey_figures["clearance"]["target_met"]},
        "rule_checks": rules,
        "purge": pur,
        "features": features_used(r),
        "flights": flights,
        "transport": {"retries": r.retries, "server_errors_or_no_answer": len(server_errors),
                      "errors": len(r.errors), "first_errors": r.errors[:10]},
        "invariants": invariants,
        "ok": all(invariants.values()),
    }
