"""The report's journey figures, pure functions of what the day observed: passengers cleared
without an officer end to end (with the boarding-pass fallback; FTE and FTA counted), wrong-person
accepts face-only and 1:1, the fallback's and late enrolment's use, manual boardings, boarding
throughput per gate beside published anchors, and the DCS's exactly-once delivery.

Cleared without an officer: the passenger boarded (by face, by boarding pass + 1:1, or by a gate
agent's manual boarding) and no officer or staff processed them anywhere (bag drop, e-Security
Gate, e-channel, lounge). A kiosk or late-enrolment refusal (FTE) and every refusal nothing could
fix (FTA) count against. Scripted stops (opt-outs, watchlist subjects) are left out of it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from touchpoints.simulator.recorder import Obs, boards

TARGET_CLEARED = 0.995
SCRIPTED_STOPS = frozenset({"opt_out", "watchlist"})
# Boarding throughput at real self-boarding gates, in passengers per minute.
ANCHORS = {"BA Boston: 200 passengers in 10 min": 20.0, "LAX: 400 passengers in 20 min": 20.0}
MIN_BOARDED_FOR_RATE = 5


@dataclass(frozen=True)
class Traveller:
    """What the report needs of one passenger's day."""

    outcome: str
    method: str = ""
    manual_reason: str = ""
    staff: tuple[tuple[str, str], ...] = ()
    fallback: tuple[tuple[str, bool], ...] = ()
    roles: frozenset[str] = frozenset()
    token_id: str | None = None
    flight: int = 0


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def clearance(people: list[Traveller]) -> dict[str, Any]:
    counted = [p for p in people if not p.roles & SCRIPTED_STOPS]
    cleared = [p for p in counted if p.outcome == "boarded" and not p.staff]
    random_referrals = [p for p in counted if any(r == "see_officer" for _, r in p.staff)]
    officer_at = Counter(tp for p in counted for tp, _ in p.staff[:1])
    reasons = Counter(f"{tp}:{r}" for p in counted for tp, r in p.staff[:1])
    share = _rate(len(cleared), len(counted))
    no_cover = len(counted) - len(random_referrals)
    return {
        "passengers": len(counted), "cleared_without_officer": len(cleared), "share": share,
        "target": TARGET_CLEARED, "target_met": share is not None and share >= TARGET_CLEARED,
        "fte": sum(p.outcome in ("kiosk_refused", "late_enrol_refused") for p in counted),
        "officer_first_at": dict(officer_at.most_common()), "officer_reasons": dict(reasons.most_common()),
        "random_officer_referrals": len(random_referrals),
        "share_without_random_referrals": _rate(len(cleared), no_cover),
        "boarded_by": dict(Counter(p.method for p in counted if p.outcome == "boarded").most_common()),
        "outcomes": dict(Counter(p.outcome for p in counted).most_common()),
    }


def fallback(people: list[Traveller]) -> dict[str, Any]:
    used = [p for p in people if p.fallback]
    tries = [t for p in people for t in p.fallback]
    by_tp: dict[str, dict[str, int]] = {}
    for tp, ok in tries:
        row = by_tp.setdefault(tp, {"attempts": 0, "through": 0})
        row["attempts"] += 1
        row["through"] += ok
    late = [p for p in people if "late_enrol" in p.roles]
    manual = [p for p in people if p.method == "manual"]
    return {
        "passengers_using_it": len(used), "share": _rate(len(used), len(people)),
        "attempts": len(tries), "through": sum(ok for _, ok in tries), "by_touchpoint": by_tp,
        "late_enrolment": {"passengers": len(late), "share": _rate(len(late), len(people)),
                           "enrolled": sum(p.token_id is not None for p in late),
                           "boarded": sum(p.outcome == "boarded" for p in late),
                           "refused": sum(p.outcome == "late_enrol_refused" for p in late)},
        "manual_boardings": {"total": len(manual),
                             "by_reason": dict(Counter(p.manual_reason for p in manual).most_common())},
    }


def wrong_person(obs: list[Obs]) -> dict[str, Any]:
    """Proceeds on a token that is not the person's own: face-only, and 1:1 (a passenger's own
    fallback, or a stranger presenting a booked passenger's pass)."""
    decided = [o for o in obs if o.status == 200 and o.outcome == "proceed" and o.own_token is False]
    one_to_one = [o for o in decided if o.method == "boarding_pass"]
    impostors = [o for o in obs if o.purpose == "pass_impostor" and o.status == 200]
    return {"face_only": len(decided) - len(one_to_one), "one_to_one": len(one_to_one),
            "examples": [f"{o.touchpoint}/{o.purpose}/{o.who}" for o in decided[:10]],
            "impostor_passes": {"attempts": len(impostors),
                                "accepted": sum(o.outcome == "proceed" for o in impostors),
                                "refer": dict(Counter(o.reason for o in impostors if o.outcome == "refer"))}}


def boarding_throughput(obs: list[Obs], flights: list[dict[str, Any]], readers: int = 0) -> dict[str, Any]:
    """Per flight at its gate: passengers boarded per minute between its first and last boarding.
    Simulated passengers step through the instant the gate answers (no door cycle, no walking), so
    this is what the service and ``readers`` e-gates allow, not a passenger's pace."""
    times: dict[int, list[float]] = {}
    for o in obs:
        if boards(o):
            times.setdefault(o.flight, []).append(o.done)
    rows = []
    for i, f in enumerate(flights):
        t = sorted(times.get(i, []))
        span = t[-1] - t[0] if len(t) >= 2 else 0.0
        rate = round((len(t) - 1) / span * 60, 1) if len(t) >= MIN_BOARDED_FOR_RATE and span > 0 else None
        rows.append({"flight": f["code"], "gate": f.get("final_gate") or f["gate"], "boarded": len(t),
                     "minutes": round(span / 60, 2), "per_minute": rate})
    rates = [r["per_minute"] for r in rows if r["per_minute"] is not None]
    return {"per_gate": rows, "anchors_per_minute": ANCHORS, "readers_per_gate": readers,
            "note": "passengers step through the instant the gate answers: the service's and readers' bound",
            "median_per_minute": sorted(rates)[len(rates) // 2] if rates else None,
            "min_per_minute": min(rates, default=None), "max_per_minute": max(rates, default=None)}


def journey_headline(report: dict[str, Any]) -> dict[str, Any]:
    j, d = report["journey"], report.get("dcs") or {}
    c, fb, w = j["clearance"], j["fallback"], j["wrong_person_accepts"]
    return {"cleared_without_officer": c["share"], "cleared_target_met": c["target_met"],
            "wrong_person_accepts_one_to_one": w["one_to_one"] + w["impostor_passes"]["accepted"],
            "fallback_share": fb["share"], "late_enrolments": fb["late_enrolment"]["enrolled"],
            "manual_boardings": fb["manual_boardings"]["by_reason"],
            "gate_per_minute_median": j["boarding_throughput"]["median_per_minute"],
            "dcs_exactly_once": d.get("exactly_once"), "dcs_lost": d.get("boarded_lost")}


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The journey's figures for a person reading the run's output (the JSON line follows them)."""
    j, d = report["journey"], report.get("dcs") or {}
    c, fb, w, bt = j["clearance"], j["fallback"], j["wrong_person_accepts"], j["boarding_throughput"]
    lines = [
        f"cleared without an officer: {c['cleared_without_officer']} of {c['passengers']} = {c['share']} "
        f"(target {c['target']}: {'met' if c['target_met'] else 'MISSED'}); FTE {c['fte']}; officers first at "
        f"{c['officer_first_at']}; without the random officer referrals (the watchlist's cover) "
        f"{c['share_without_random_referrals']}",
        f"wrong-person accepts: face-only {w['face_only']}, 1:1 {w['one_to_one']}; impostor passes accepted "
        f"{w['impostor_passes']['accepted']} of {w['impostor_passes']['attempts']}",
        f"boarding-pass fallback: {fb['passengers_using_it']} passengers ({fb['share']}), {fb['through']} of "
        f"{fb['attempts']} attempts through; late enrolments {fb['late_enrolment']['enrolled']}; manual boardings "
        f"{fb['manual_boardings']['by_reason']}; captures taken alone (photos used up) "
        f"{fb.get('alone_retake_frames', 0)}",
        f"boarding per gate: median {bt['median_per_minute']}/min (min {bt['min_per_minute']}, max "
        f"{bt['max_per_minute']}); anchors 20/min (BA Boston 200 in 10 min, LAX 400 in 20 min)",
    ]
    if d.get("status") == "available":
        lines.append(f"DCS: {d['boarded_reported_once']} of {d['boarded_passengers']} boarded reported exactly once, "
                     f"lost {d['boarded_lost']}, twice {d['boarded_twice']}, bad signatures {d['bad_signatures']}, "
                     f"{d['failed_by_receiver']} of {d['deliveries']} deliveries failed by the receiver, "
                     f"boarding.closed lists agreeing {d['not_boarded_lists_agree']} of {d['flights_closed']}")
    else:
        lines.append(f"DCS: not checked (webhooks: {d.get('webhooks')})")
    return ["simulate: " + line for line in lines]
