"""The journey and DCS parts of the simulator's report (made-up observations and deliveries), the
boarding passes it prints (read back by the service's own parser), and its DCS receiver over HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import httpx
import pytest

from flighttoken.boardingpass.bcbp import parse
from flighttoken.boardingpass.names import names_match
from touchpoints.simulator import dcs, dcs_report, journey_report
from touchpoints.simulator.journey_report import Traveller
from touchpoints.simulator.passes import bcbp
from touchpoints.simulator.recorder import Obs
from touchpoints.simulator.scenario import Options, build_plan, load_identities
from touchpoints.simulator.steps import manual_reason


def _obs(tp: str, purpose: str, who: str, outcome: str, *, reason: str = "", own: bool | None = None,
         method: str = "face", flight: int = 0, done: float = 1.0) -> Obs:
    return Obs(tp, purpose, who, flight, 0.0, 0.0, done, 200, outcome, reason, own, method)


def test_clearance_counts_fte_and_every_officer_but_not_scripted_stops() -> None:
    people = [Traveller("boarded", "face")] * 6 + [
        Traveller("boarded", "one_to_one", fallback=(("gate", True),)),
        Traveller("boarded", "manual", manual_reason="face_not_recognised", fallback=(("gate", False),)),
        Traveller("boarded", "face", staff=(("lounge", "no_match"),)),  # boarded, but staff at the lounge
        Traveller("officer", staff=(("e_channel", "tailgating"),)),
        Traveller("officer", staff=(("e_channel", "see_officer"),)),
        Traveller("kiosk_refused"),
        Traveller("late_enrol_refused", roles=frozenset({"late_enrol"})),
        Traveller("opted_out", roles=frozenset({"opt_out"})),
        Traveller("watchlist", staff=(("e_channel", "see_officer"),), roles=frozenset({"watchlist"})),
    ]
    c = journey_report.clearance(people)
    assert c["passengers"] == 13 and c["cleared_without_officer"] == 8
    assert c["share"] == pytest.approx(8 / 13, abs=1e-4) and c["target_met"] is False
    assert c["fte"] == 2 and c["random_officer_referrals"] == 1
    assert c["share_without_random_referrals"] == pytest.approx(8 / 12, abs=1e-4)
    assert c["officer_first_at"] == {"e_channel": 2, "lounge": 1}
    assert c["boarded_by"] == {"face": 7, "one_to_one": 1, "manual": 1}
    assert journey_report.clearance([Traveller("boarded", "face")] * 200)["target_met"] is True


def test_fallback_late_enrolment_and_manual_boardings_are_counted() -> None:
    people = [Traveller("boarded", "face")] * 7 + [
        Traveller("boarded", "one_to_one", fallback=(("e_channel", True), ("gate", True))),
        Traveller("boarded", "manual", manual_reason="capture_refused", fallback=(("gate", False),),
                  roles=frozenset({"late_enrol"}), token_id="t1"),
        Traveller("late_enrol_refused", roles=frozenset({"late_enrol"})),
    ]
    f = journey_report.fallback(people)
    assert f["passengers_using_it"] == 2 and f["share"] == pytest.approx(0.2)
    assert f["attempts"] == 3 and f["through"] == 2
    assert f["by_touchpoint"]["gate"] == {"attempts": 2, "through": 1}
    assert f["late_enrolment"] == {"passengers": 2, "share": 0.2, "enrolled": 1, "boarded": 1, "refused": 1}
    assert f["manual_boardings"] == {"total": 1, "by_reason": {"capture_refused": 1}}


def test_a_gate_agent_gives_the_reason_the_face_path_failed() -> None:
    assert manual_reason("no_match") == manual_reason("face_mismatch") == "face_not_recognised"
    assert manual_reason("tailgating") == "capture_refused"


def test_wrong_person_accepts_are_split_face_only_and_one_to_one() -> None:
    obs = [_obs("gate", "journey", "p1", "proceed", own=True),
           _obs("gate", "journey", "p2", "proceed", own=False),
           _obs("e_channel", "fallback", "p3", "proceed", own=False, method="boarding_pass"),
           _obs("gate", "pass_impostor", "s1", "refer", reason="face_mismatch", method="boarding_pass"),
           _obs("gate", "pass_impostor", "s2", "proceed", own=False, method="boarding_pass")]
    w = journey_report.wrong_person(obs)
    assert w["face_only"] == 1 and w["one_to_one"] == 2
    assert w["impostor_passes"] == {"attempts": 2, "accepted": 1, "refer": {"face_mismatch": 1}}
    assert journey_report.wrong_person(obs[:1] + obs[3:4]) == {
        "face_only": 0, "one_to_one": 0, "examples": [],
        "impostor_passes": {"attempts": 1, "accepted": 0, "refer": {"face_mismatch": 1}}}


def test_boarding_throughput_per_gate_counts_face_one_to_one_and_manual_boardings() -> None:
    flights = [{"code": "CX100", "gate": "N1"}, {"code": "KA101", "gate": "N2"}]
    obs = [_obs("gate", "journey", f"p{i}", "proceed", own=True, done=60.0 + 3 * i) for i in range(10)]
    obs += [_obs("gate", "fallback", "p10", "proceed", own=True, done=90.0, method="boarding_pass"),
            Obs("gate", "manual", "p11", 0, 0.0, 0.0, 93.0, 201, "boarded", "face_not_recognised", True, "manual"),
            _obs("gate", "wrong_gate", "p12", "proceed", done=200.0),  # a rule check, not a boarding
            _obs("gate", "journey", "p13", "refer", reason="no_match", done=300.0),
            _obs("gate", "journey", "p20", "proceed", own=True, flight=1, done=10.0)]
    t = journey_report.boarding_throughput(obs, flights, readers=2)
    cx, ka = t["per_gate"]
    assert cx["boarded"] == 12 and cx["minutes"] == pytest.approx(0.55)
    assert cx["per_minute"] == pytest.approx(11 / 33 * 60, abs=0.1)
    assert ka["boarded"] == 1 and ka["per_minute"] is None  # too few to make a rate
    assert t["median_per_minute"] == cx["per_minute"] and t["readers_per_gate"] == 2
    assert set(t["anchors_per_minute"].values()) == {20.0}


def _delivery(event_type: str, subject: dict, *, eid: str, status: int = 200, ok: bool = True) -> dcs.Delivery:
    return dcs.Delivery("CX", eid, status, ok, {"id": eid, "type": event_type, "data": subject})


def test_dcs_exactly_once_after_dedupe_with_retries_and_failures() -> None:
    expected = dcs_report.Expected(boarded={"t1": "face", "t2": "manual"}, not_boarded={"f1": {"t3"}},
                                   opted_out={"t4"})
    deliveries = [
        _delivery("passenger.boarded", {"token_id": "t1", "method": "biometric"}, eid="e1", status=503),
        _delivery("passenger.boarded", {"token_id": "t1", "method": "biometric"}, eid="e1"),
        _delivery("passenger.boarded", {"token_id": "t1", "method": "biometric"}, eid="e1"),  # at least once
        _delivery("passenger.boarded", {"token_id": "t2", "method": "manual"}, eid="e2"),
        _delivery("boarding.closed", {"flight_id": "f1", "not_boarded": [{"token_id": "t3"}]}, eid="e3"),
        _delivery("passenger.opted_out", {"token_id": "t4"}, eid="e4"),
    ]
    out = dcs_report.build(deliveries, expected, failure_share=0.2)
    assert out["exactly_once"] is True
    assert out["boarded_reported_once"] == 2 and out["boarded_lost"] == out["boarded_twice"] == 0
    assert out["failed_by_receiver"] == 1 and out["redelivered_events"] == 1 and out["accepted_more_than_once"] == 1
    assert out["not_boarded_lists_agree"] == 1 and out["opted_out_reported"] == 1


@pytest.mark.parametrize("breakage", ["lost", "twice", "bad_signature", "wrong_list", "wrong_method", "stranger"])
def test_dcs_failures_break_exactly_once(breakage: str) -> None:
    expected = dcs_report.Expected(boarded={"t1": "face", "t2": "one_to_one"}, not_boarded={"f1": {"t3"}})
    deliveries = [
        _delivery("passenger.boarded", {"token_id": "t1", "method": "biometric"}, eid="e1",
                  ok=breakage != "bad_signature"),
        _delivery("passenger.boarded", {"token_id": "t2",
                                        "method": "manual" if breakage == "wrong_method" else "one_to_one"},
                  eid="e2", status=503 if breakage == "lost" else 200),
        _delivery("boarding.closed", {"flight_id": "f1", "not_boarded": [
            {"token_id": "t3"}, *([{"token_id": "t1"}] if breakage == "wrong_list" else [])]}, eid="e3"),
    ]
    if breakage == "twice":  # a second event id for the same boarding: a duplicate the DCS cannot dedupe
        deliveries.append(_delivery("passenger.boarded", {"token_id": "t1", "method": "biometric"}, eid="e9"))
    if breakage == "stranger":
        deliveries.append(_delivery("passenger.boarded", {"token_id": "t7", "method": "biometric"}, eid="e7"))
    out = dcs_report.build(deliveries, expected)
    assert out["exactly_once"] is False, out


def test_a_signature_is_checked_as_the_readme_says() -> None:
    body, secret, t = b'{"id":"x"}', "whsec_abc", int(time.time())
    good = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert dcs.signature_valid(secret, body, f"t={t},v1={good}")
    assert not dcs.signature_valid(secret, body + b" ", f"t={t},v1={good}")
    assert not dcs.signature_valid("whsec_other", body, f"t={t},v1={good}")
    assert not dcs.signature_valid(secret, body, f"t={t - 400},v1={good}")  # too old: a replay
    assert not dcs.signature_valid(secret, body, f"v1={good}")


def test_the_simulated_pass_is_read_by_the_services_parser_for_that_booking() -> None:
    departure = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    text = bcbp(surname="O'NEAL", given_names="SHAQUILLE RASHAUN", pnr="B000123", destination="LAX", carrier="CX",
                number="104", departure=departure, timezone="Asia/Hong_Kong", seat="12A", sequence=7)
    leg = parse(text).legs[0]
    assert (leg.pnr, leg.carrier, leg.flight, leg.from_airport, leg.to_airport) == ("B000123", "CX", "104", "HKG",
                                                                                    "LAX")
    assert leg.julian_date == 1  # 1 January in Hong Kong, where the service reads the date
    assert names_match(parse(text).passenger_name, "O'NEAL", "SHAQUILLE RASHAUN")


def test_late_enrollees_carry_a_chip_photo_that_is_never_a_capture(base_settings) -> None:
    plan = build_plan(load_identities(base_settings.faces_dir), Options(flights=4, passengers=300))
    late = [p for p in plan.passengers if "late_enrol" in p.roles]
    assert len(late) == 15
    assert all(p.chip_photo is not None and p.chip_photo not in (p.enrol_photo, *p.probes) and p.probes
               and p.bags == 0 for p in late)
    assert 0 < sum(p.bags > 0 for p in plan.passengers) < 300


async def test_the_receiver_checks_signatures_and_fails_the_share_it_is_told() -> None:
    receiver = dcs.Receiver(failure_share=1.0)
    async with dcs.running(receiver), httpx.AsyncClient() as http:
        receiver.secrets["CX"] = "whsec_s"
        body = json.dumps({"id": "e1", "type": "passenger.boarded", "data": {"token_id": "t1"}}).encode()
        t = int(time.time())
        sig = hmac.new(b"whsec_s", f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        r = await http.post(receiver.url + "CX", content=body, headers={"FlightToken-Event-Id": "e1",
                                                                        "FlightToken-Signature": f"t={t},v1={sig}"})
        assert r.status_code == 503
        receiver.failure_share = 0.0
        receiver._rng.seed(1)
        r = await http.post(receiver.url + "CX", content=body, headers={"FlightToken-Event-Id": "e1",
                                                                        "FlightToken-Signature": f"t={t},v1=00"})
        assert r.status_code == 200
    assert [(d.event_id, d.status, d.signature_ok) for d in receiver.deliveries] == [("e1", 503, True),
                                                                                     ("e1", 200, False)]
    assert dcs.seen(receiver) == {("passenger.boarded", "t1")}
