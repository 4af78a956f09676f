"""The day's plan (from the real LFW folder) and the report's arithmetic (from made-up observations)."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict

import pytest

from touchpoints.simulator import report
from touchpoints.simulator.baseline import RushBaseline
from touchpoints.simulator.recorder import Obs, Recorder
from touchpoints.simulator.scenario import (
    DEPARTURE_SPAN_MIN,
    FIRST_DEPARTURE_MIN,
    Options,
    ScenarioError,
    build_plan,
    load_identities,
)


@pytest.fixture(scope="module")
def lfw(base_settings):
    return load_identities(base_settings.faces_dir)


def test_a_ci_day_uses_distinct_people_and_never_probes_with_the_enrolment_photo(lfw) -> None:
    plan = build_plan(lfw, Options(flights=4, passengers=300))
    assert plan.banks == 1 and len(plan.passengers) == 300
    assert len({p.identity for p in plan.passengers}) == 300
    assert all(p.probes and p.enrol_photo not in p.probes for p in plan.passengers)
    strangers = {s.identity for s in plan.strangers}
    assert len(strangers) == 20 and not strangers & {p.identity for p in plan.passengers}
    assert all(len(photos) == 1 for name, photos in lfw if name in strangers)
    roles = Counter(r for p in plan.passengers for r in p.roles)
    assert roles["opt_out"] == 3 and roles["watchlist"] == 2 and roles["wrong_gate"] == 6
    assert all(len(p.roles) <= 1 or p.roles == {"stale_gate"} for p in plan.passengers)
    for p in plan.passengers:
        if "watchlist" in p.roles:
            assert p.watchlist_photo not in (p.enrol_photo, *p.probes)
    assert {f.gate for f in plan.flights} | {f.new_gate for f in plan.flights if f.new_gate} <= set(plan.gates)
    latest = FIRST_DEPARTURE_MIN + DEPARTURE_SPAN_MIN
    assert all(f.departure_offset_min + f.delay_min <= latest for f in plan.flights)
    assert sum(1 for f in plan.flights if f.delay_min) == 2


def test_a_full_day_reuses_faces_only_two_banks_later(lfw) -> None:
    plan = build_plan(lfw, Options(flights=20, passengers=3000))
    assert plan.banks >= 3
    by_bank: dict[int, set[str]] = defaultdict(set)
    for p in plan.passengers:
        by_bank[p.bank].add(p.identity)
    for b in range(plan.banks - 1):
        assert not by_bank[b] & by_bank[b + 1], "adjacent banks board together: they must not share faces"
    gates: dict[int, set[str]] = defaultdict(set)
    for f in plan.flights:
        gates[f.bank].add(f.gate)
    for b in range(plan.banks - 1):
        assert not gates[b] & gates[b + 1]
    reused = [p for p in plan.passengers if p.reuse]
    assert reused and all(p.bank >= 2 for p in reused)
    last = max(p.bank for p in plan.passengers)
    assert all(p.bank == last for p in plan.passengers if "watchlist" in p.roles)
    first_use = {p.identity: p for p in plan.passengers if p.reuse == 0}
    changed = sum(p.enrol_photo != first_use[p.identity].enrol_photo for p in reused)
    assert changed >= 0.5 * len(reused), "a face travelling again should mostly enrol with another photo"


def test_an_impossible_day_is_refused_with_a_reason(lfw) -> None:
    with pytest.raises(ScenarioError, match="add flights"):
        build_plan(lfw, Options(flights=4, passengers=3000))


# ---- report arithmetic -------------------------------------------------------------------------------


def obs(touchpoint="e_channel", purpose="journey", who="p1", outcome="proceed", reason="matched",
        own: bool | None = True,
        done=1.0, status=200, flight=0) -> Obs:
    return Obs(touchpoint, purpose, who, flight, done - 0.2, done - 0.1, done, status, outcome, reason,
               own if outcome == "proceed" else None)


def test_fnir_fpir_and_wrong_person_accepts() -> None:
    seen = [obs(who=f"p{i}") for i in range(8)]
    seen += [obs(who="p8", outcome="refer", reason="no_match"), obs(who="p9", outcome="refer", reason="tailgating"),
             obs(who="p9", purpose="retry")]
    seen += [obs(purpose="stranger", who=f"s{i}", outcome="refer", reason="no_match") for i in range(3)]
    seen += [obs(purpose="stranger", who="s3", own=None)]
    acc = report.accuracy(seen)
    e = acc["fnir"]["e_channel"]
    assert (e["captures"], e["referred"], e["fnir"]) == pytest.approx((11, 2, round(2 / 11, 4)))
    assert e["fnir_matching"] == pytest.approx(1 / 10, abs=1e-4)  # the tailgating capture: not a matching failure
    assert (e["visits"], e["visits_referred"]) == (10, 1)  # p9 got through on the retry
    assert acc["fpir"]["e_channel"] == {"attempts": 4, "accepted": 1, "fpir": 0.25, "refer": {"no_match": 3}}
    assert acc["wrong_person_accepts"] == 0
    assert report.accuracy([*seen, obs(who="p3", touchpoint="gate", own=False)])["wrong_person_accepts"] == 1
    # A departed passenger's face, after the purge, is a non-mated search: a proceed is a false positive.
    after = report.accuracy([*seen, obs(who="p4", purpose="purge_probe", own=False)])
    assert after["wrong_person_accepts"] == 0 and after["fpir"]["departed_passengers"]["accepted"] == 1
    assert after["fpir_overall"] == pytest.approx(round(2 / 5, 4))


def test_refusals_that_were_accepted_break_the_invariants() -> None:
    seen = [obs(touchpoint="gate", purpose="wrong_gate", outcome="refer", reason="wrong_flight"),
            obs(touchpoint="gate", purpose="double_board", outcome="proceed")]
    rules = report.rule_checks(seen)
    assert rules["wrong_gate_accepts"] == {"attempts": 1, "accepted": 0, "reasons": {"wrong_flight": 1}}
    assert rules["double_boarding_accepts"]["accepted"] == 1


def _day(seen, samples, raw=None, flights=None, outcomes=None) -> report.DayResult:
    from touchpoints.simulator.scenario import Plan

    plan = Plan(options=Options(flights=1, passengers=1), flights=[], passengers=[], strangers=[], banks=1,
                arrivals=[], gates=[], pool_sizes={})
    return report.DayResult(plan=plan, obs=seen, samples=samples, events=[], flights=flights or [],
                            outcomes=outcomes or [], features={}, started_at="", duration_s=40.0, service="",
                            devices="", raw=raw or [])


def test_sustained_throughput_counts_only_saturated_identify_only_seconds() -> None:
    # 0-30 s: 6 identifies in flight, no enrolment, 8 done per second; 30-40 s: an enrolment in flight too.
    samples = [(k / 10, 6, 0 if k < 300 else 1) for k in range(400)]
    seen = [obs(done=s + 0.5) for s in range(40) for _ in range(8 if s < 30 else 2)]
    seen += [obs(touchpoint="kiosk", purpose="enrol", outcome="created", done=s + 0.5) for s in range(30, 40)]
    t = report.throughput(_day(seen, samples, raw=[{"faces_per_s": 10.0}, {"faces_per_s": 9.0}]))
    assert t["saturated_identify_only_s"] == 30 and t["sustained_identify_per_s"] == pytest.approx(8.0)
    assert t["raw_model_per_s"] == pytest.approx(10.0)  # the better of the two measurements: the stricter ratio
    assert t["ratio"] == pytest.approx(0.8) and t["ratio_basis"] == "identify-only saturated seconds"
    assert not t["target_met"]
    assert t["saturated_s"] == 40 and t["sustained_analyses_per_s"] == pytest.approx((30 * 8 + 10 * 3) / 40)


def test_with_a_final_wave_the_ratio_is_held_to_raw_measured_through_the_rush() -> None:
    samples = [(k / 10, 6, 0) for k in range(400)]
    seen = [obs(done=s + 0.5) for s in range(40) for _ in range(8)]
    # The machine was faster at the day's start; through the rush raw fell from 12 to 8 faces/s.
    raw = [{"when": "day_start", "faces_per_s": 14.0, "cpu_ms_per_face": 15.0},
           {"when": "wave_release", "t_s": 0.0, "faces_per_s": 12.0, "cpu_ms_per_face": 20.0,
            "service_cpu_s_per_s": 0.02},
           {"when": "rush_end", "t_s": 40.0, "faces_per_s": 8.0, "cpu_ms_per_face": 30.0},
           {"when": "day_end", "faces_per_s": 13.0}]
    t = report.throughput(_day(seen, samples, raw=raw))
    # Each saturated second is held to raw interpolated at that second: their mean is 10/s.
    assert t["raw_basis"] == ["wave_release", "rush_end"] and t["raw_reference"] == "time-matched"
    assert t["raw_model_per_s"] == pytest.approx(10.0) and t["ratio"] == pytest.approx(0.8)
    assert t["ratio_vs_best_raw_of_the_day"] == pytest.approx(round(8 / 14, 3))
    # A measurement taken while the service was busy is never a basis: it would flatter the ratio.
    raw[2]["service_cpu_s_per_s"] = 0.5
    t = report.throughput(_day(seen, samples, raw=raw))
    assert t["raw_basis"] == ["wave_release"] and t["raw_model_per_s"] == pytest.approx(12.0)
    raw[2]["service_cpu_s_per_s"], raw[2]["other_cpu_s_per_s"] = 0.0, 0.3  # e.g. PostgreSQL vacuuming
    assert report.throughput(_day(seen, samples, raw=raw))["raw_basis"] == ["wave_release"]
    # Without a final wave: the best of every quiet measurement.
    t = report.throughput(_day(seen, samples, raw=[raw[0], raw[3]]))
    assert t["raw_basis"] == ["day_start", "day_end"] and t["raw_model_per_s"] == pytest.approx(14.0)
    assert t["raw_reference"] == "best"


def test_cpu_per_identify_is_priced_over_identify_only_windows() -> None:
    samples = [(k / 10, 6, 0 if k < 300 else 1) for k in range(400)]
    seen = [obs(done=s + 0.5) for s in range(40) for _ in range(8)]
    day = _day(seen, samples, raw=[{"faces_per_s": 10.0, "cpu_ms_per_face": 20.0}])
    # 0.2 CPU-s per second while 8 identifies/s complete: 25 ms each; 0.6 CPU-s/s once enrolling.
    day.cpu = [(5.0 * k, 1.0 * k if k <= 6 else 6.0 + 3.0 * (k - 6)) for k in range(9)]
    cost = report.throughput(day)["cpu"]
    assert cost["service_cpu_ms_per_identify"] == pytest.approx(25.0) and cost["identifies_priced"] == 240
    assert cost["ratio_cpu"] == pytest.approx(0.8) and cost["ratio_cpu_basis"] == "identify-only saturated windows"
    assert report.throughput(_day(seen, samples))["cpu"]["status"].startswith("not measured")


def test_the_ratio_is_also_held_to_the_cores_the_simulator_left_the_service() -> None:
    samples = [(k / 10, 6, 0) for k in range(400)]
    seen = [obs(done=s + 0.5) for s in range(40) for _ in range(8)]
    day = _day(seen, samples, raw=[{"faces_per_s": 10.0, "cpu_ms_per_face": 20.0}])
    day.machine = {"cpus": 2}
    day.cpu = [(5.0 * k, 100.0 + 1.5 * k) for k in range(9)]  # the service: another process
    day.client_cpu = [(5.0 * k, 2.0 * k) for k in range(9)]  # the simulator: 0.4 CPU-s per second
    t = report.throughput(day)
    assert t["ratio"] == pytest.approx(0.8) and t["simulator_cpu_s_per_s"] == pytest.approx(0.4)
    # 8/s against 10/s x (2 - 0.4) / 2 = 8/s.
    assert t["ratio_client_adjusted"] == pytest.approx(1.0)
    assert t["target_met_client_adjusted"] and not t["target_met"]
    day.client_cpu = [(5.0 * k, 100.0 + 1.5 * k) for k in range(9)]  # the service ran inside the simulator
    assert report.throughput(day)["ratio_client_adjusted"] is None


def test_an_unfinished_or_leaky_purge_is_incomplete() -> None:
    done = {"completed": True, "key_destroyed_at": "2026-01-01T00:00:00Z"}
    clean = {"templates": 0, "flight_keys": 0, "live_tokens": 0}

    def purge(receipt, database, probes=()):
        flights = [{"code": "CX1", "facts": {"purge": {"receipt": receipt, "database": database}}}]
        return report.purge(_day(list(probes), [], flights=flights))

    assert purge(done, clean)["complete"] is True
    assert purge(done | {"completed": False}, clean)["complete"] is False
    assert purge(done, clean | {"templates": 3})["complete"] is False
    leaked = [obs(purpose="purge_probe", outcome="refer", reason="token_ended")]
    assert purge(done, clean, leaked)["recognised_after_departure"] == 1
    assert purge(done, clean, leaked)["complete"] is False


async def test_a_paused_day_sends_nothing_until_the_requests_in_flight_are_done() -> None:
    rec = Recorder()
    sent: list[str] = []

    async def request(name: str, hold_s: float) -> None:
        await rec.wait_open()
        with rec.in_flight("identify"):
            sent.append(name)
            await asyncio.sleep(hold_s)

    first = asyncio.create_task(request("in flight", 0.2))
    await asyncio.sleep(0.05)
    async with rec.paused():
        late = asyncio.create_task(request("late", 0.0))
        await asyncio.sleep(0.05)
        assert first.done() and sent == ["in flight"] and rec.inflight["identify"] == 0
    await late
    # The pause lasted at least the 0.05 s slept inside it (timer granularity aside); how much of the
    # first request's hold it also covered depends on how fast the machine got there.
    assert sent == ["in flight", "late"] and len(rec.pauses) == 1 and rec.pauses[0][1] - rec.pauses[0][0] >= 0.04


async def test_the_rush_baseline_measures_at_the_wave_then_paused_until_the_rush_is_over() -> None:
    rec = Recorder()
    taken: list[tuple[str, int]] = []

    async def measure(when: str) -> dict:
        taken.append((when, rec.inflight["identify"]))
        return {"when": when, "faces_per_s": 10.0, "t_s": rec.now()}

    async def request() -> None:
        with rec.in_flight("identify"):
            await asyncio.sleep(0.12)

    rush = RushBaseline(measure, rec, saturation_level=4, every_s=0.05)
    rec.samples.append((rec.now(), 6, 0))
    # The rush: six requests in flight when the wave's measurement and the first pause come; they
    # finish, and no more come.
    in_flight = [asyncio.create_task(request()) for _ in range(6)]
    await asyncio.sleep(0)
    await rush.at_wave()
    await asyncio.gather(*in_flight)
    rec.samples.append((rec.now(), 0, 0))
    assert rush._task is not None
    await asyncio.wait_for(rush._task, 5)
    # Never measured with a request in flight: each pause drained the day first.
    assert taken[0] == ("wave_release", 6)  # the runner's hook: its pause is the runner's
    assert [w for w, _ in taken[1:]][-1] == "rush_end" and all(n == 0 for _, n in taken[1:])
    assert [m["when"] for m in rush.measurements] == [w for w, _ in taken]
