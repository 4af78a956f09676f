"""The DCS part of the report, from the receiver's deliveries and what the simulator knows: every
boarded passenger reported exactly once after dedupe by event id (none lost, none for a passenger
who did not board, the right method), every signature valid, and one boarding.closed per closed
flight whose not-boarded list is exactly the enrolled passengers who did not board."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from touchpoints.simulator.dcs import Delivery

METHODS = {"face": "biometric", "one_to_one": "one_to_one", "manual": "manual"}


@dataclass
class Expected:
    boarded: dict[str, str] = field(default_factory=dict)
    """token id → how the simulator saw it board (face, one_to_one, manual)."""
    not_boarded: dict[str, set[str]] = field(default_factory=dict)
    """flight id of every flight whose boarding closed → tokens enrolled on it that did not board
    (opted-out passengers excluded: they had their own event)."""
    opted_out: set[str] = field(default_factory=set)


def build(deliveries: list[Delivery], expected: Expected, *, registered: dict[str, str] | None = None,
          drain_s: float | None = None, dead_letters: int | None = None, failure_share: float = 0.0) -> dict[str, Any]:
    accepted = {d.event_id: d for d in deliveries if d.status == 200}
    events = [d.event for d in accepted.values()]
    boarded_events: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e.get("type") == "passenger.boarded":
            boarded_events.setdefault(str(e.get("data", {}).get("token_id")), []).append(e)
    lost = sorted(set(expected.boarded) - set(boarded_events))
    twice = sorted(t for t, es in boarded_events.items() if len(es) > 1)
    unexpected = sorted(set(boarded_events) - set(expected.boarded))
    wrong_method = sorted(t for t, es in boarded_events.items() if t in expected.boarded
                          and es[0].get("data", {}).get("method") != METHODS.get(expected.boarded[t]))
    closed: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e.get("type") == "boarding.closed":
            closed.setdefault(str(e.get("data", {}).get("flight_id")), []).append(e)
    lists_agree = {f: len(closed.get(f, [])) == 1
                   and {str(x.get("token_id")) for x in closed[f][0]["data"].get("not_boarded", [])} == want
                   for f, want in expected.not_boarded.items()}
    opted = {str(e.get("data", {}).get("token_id")) for e in events if e.get("type") == "passenger.opted_out"}
    per_event = Counter(d.event_id for d in deliveries)
    out = {
        "webhooks": registered or {},
        "deliveries": len(deliveries), "failed_by_receiver": sum(d.status != 200 for d in deliveries),
        "failure_share_set": failure_share,
        "events_accepted": len(accepted), "by_type": dict(Counter(e.get("type") for e in events).most_common()),
        "redelivered_events": sum(n > 1 for n in per_event.values()),
        "accepted_more_than_once": sum(1 for eid in accepted if sum(d.event_id == eid and d.status == 200
                                                                    for d in deliveries) > 1),
        "bad_signatures": sum(not d.signature_ok for d in deliveries),
        "boarded_passengers": len(expected.boarded), "boarded_reported_once": sum(
            len(boarded_events.get(t, [])) == 1 for t in expected.boarded),
        "boarded_lost": len(lost), "boarded_twice": len(twice), "reported_but_not_boarded": len(unexpected),
        "wrong_method": len(wrong_method), "lost_examples": lost[:5],
        "flights_closed": len(expected.not_boarded), "boarding_closed_events": sum(len(v) for v in closed.values()),
        "not_boarded_listed": sum(len(e[0]["data"].get("not_boarded", [])) for e in closed.values()),
        "not_boarded_lists_agree": sum(lists_agree.values()),
        "opted_out_reported": len(opted & expected.opted_out), "opted_out_expected": len(expected.opted_out),
        "drain_s": drain_s, "dead_letters": dead_letters,
    }
    out["exactly_once"] = (not lost and not twice and not unexpected and not wrong_method
                           and out["bad_signatures"] == 0 and all(lists_agree.values())
                           and expected.opted_out <= opted)
    return out
