"""A passenger's way through one touchpoint when the face alone is not enough, and late enrolment.

After a face refusal a camera cannot fix (no_match, ambiguous_match, or a capture refusal after the
retake), the passenger scans their boarding pass and the touchpoint tries again with a new capture
and the pass (1:1). If that fails too, staff take over: at the gate the agent boards them by hand
(manual boarding with a reason code); anywhere else an officer does, which the report counts as not
cleared without an officer. Mixed into :class:`touchpoints.simulator.runner.Runner`.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from touchpoints.models import (
    CAPTURE_REASONS,
    MATCHING_REASONS,
    Booking,
    Consent,
    EnrolmentRequest,
    EnrolmentResult,
    TravelDocument,
)
from touchpoints.simulator.dcs_report import Expected
from touchpoints.simulator.journey_report import Traveller
from touchpoints.simulator.passes import bcbp
from touchpoints.simulator.recorder import Obs
from touchpoints.transport import ApiError, TouchpointError

if TYPE_CHECKING:  # annotations only: the runner imports this module
    from touchpoints.simulator.features import Features
    from touchpoints.simulator.recorder import Recorder
    from touchpoints.simulator.runner import FlightState, Lanes, PassengerState
    from touchpoints.simulator.scenario import Options, Plan

# Refusals after which a passenger reaches for the boarding pass: the face could not be found.
FALLBACK_REASONS = CAPTURE_REASONS | MATCHING_REASONS
TERMS_TEXT = "FlightToken biometric journey: terms for the airport-day simulation, v1"


def manual_reason(refer_reason: str) -> str:
    """The reason code a gate agent gives for boarding by hand after this refusal."""
    return "capture_refused" if refer_reason in CAPTURE_REASONS else "face_not_recognised"


class Steps:
    # What the steps need of the runner they are mixed into (set in Runner.__init__).
    plan: Plan
    o: Options
    features: Features
    rec: Recorder
    flights: list[FlightState]
    people: list[PassengerState]
    e_security_gates: Lanes
    _last: dict[int, Obs]

    async def _touch(self, lanes: Lanes, touchpoint: str, index: int, flight: int, **kw: Any) -> bool:
        """Face-only at a touchpoint, with its retakes (Runner)."""
        raise NotImplementedError

    async def _identify(self, lanes: Lanes, touchpoint: str, purpose: str, who: int, flight: int, *,
                        boarding_pass: str | None = None, bags: int | None = None,
                        victim: uuid.UUID | None = None) -> Obs:
        """One capture at a touchpoint (Runner)."""
        raise NotImplementedError

    def boarding_pass(self, index: int) -> str:
        p = self.plan.passengers[index]
        f = self.flights[p.flight]
        departure = datetime.fromisoformat(f.facts["scheduled_departure"])
        return bcbp(surname=p.surname, given_names=p.given_names, pnr=p.booking_reference,
                    destination=f.plan.destination, carrier=f.plan.airline, number=f.plan.number,
                    departure=departure, timezone=self.o.ops_timezone, seat=p.seat,
                    sequence=1 + f.plan.passengers.index(index))

    async def _through(self, lanes: Any, touchpoint: str, index: int, flight: int, **kw: Any) -> bool:
        """Face-only (with its retake), then the boarding pass (1:1), then staff. True when the
        passenger got through without an officer (a gate agent's manual boarding included)."""
        me = self.people[index]
        if await self._touch(lanes, touchpoint, index, flight, **kw):
            return True
        last = self._last[index]
        if last.reason not in FALLBACK_REASONS:
            me.staff.append((touchpoint, last.reason or last.outcome))
            return False
        obs = await self._identify(lanes, touchpoint, "fallback", index, flight,
                                   boarding_pass=self.boarding_pass(index), **kw)
        me.fallback.append((touchpoint, obs.outcome == "proceed"))
        if obs.outcome == "proceed":
            if touchpoint == "gate":
                me.method = "one_to_one"
            return True
        if touchpoint == "gate" and obs.reason in FALLBACK_REASONS | {"face_mismatch"}:
            return await self._board_by_hand(lanes, index, flight, manual_reason(obs.reason))
        me.staff.append((touchpoint, obs.reason or obs.outcome))
        return False

    async def _board_by_hand(self, lanes: Any, index: int, flight: int, reason: str) -> bool:
        me = self.people[index]
        assert me.token_id is not None
        await self.rec.wait_open()
        queued = self.rec.now()
        async with lanes.use() as gate:
            sent = self.rec.now()
            try:
                done = await gate.board_manually(me.token_id, f"SIM-AGENT-{self.flights[flight].gate}", reason)
                obs = Obs("gate", "manual", f"p{index}", flight, queued, sent, self.rec.now(), 201, "boarded",
                          reason, done.token_id == me.token_id, "manual")
            except ApiError as exc:
                obs = Obs("gate", "manual", f"p{index}", flight, queued, sent, self.rec.now(), exc.status, exc.code,
                          reason)
            except TouchpointError as exc:
                obs = Obs("gate", "manual", f"p{index}", flight, queued, sent, self.rec.now(), 0, "no_answer",
                          str(exc)[:80])
        self.rec.obs.append(obs)
        if obs.outcome == "boarded":
            me.method, me.manual_reason = "manual", reason
            return True
        me.staff.append(("gate", obs.outcome))
        return False

    async def _late_enrol(self, index: int) -> uuid.UUID | None:
        """At the e-Security Gate: document, chip photo, boarding pass, consent and a live capture.
        Sent as the service's OpenAPI says: the pass in place of the booking where the enrolment
        takes one (``Features.late_enrol_by_pass``), else the booking (services before it)."""
        p = self.plan.passengers[index]
        flight_id = self.flights[p.flight].id
        assert flight_id is not None and p.chip_photo is not None

        def request() -> EnrolmentRequest:
            return EnrolmentRequest(
                document=TravelDocument(**p.document()),  # type: ignore[arg-type]
                booking=Booking(flight_id=flight_id, booking_reference=p.booking_reference, seat=p.seat,
                                lounge_eligible=p.lounge),
                captures=[p.enrol_photo.read_bytes()], consent=Consent.accepted(TERMS_TEXT, "sim-v1"),
                chip_photo=p.chip_photo.read_bytes())  # type: ignore[union-attr]

        body = msgspec.to_builtins(await asyncio.to_thread(request))
        if self.features.late_enrol_by_pass:  # the pass brings flight, booking reference and seat
            body.pop("booking")
            body["boarding_pass"] = self.boarding_pass(index)
        await self.rec.wait_open()
        queued = self.rec.now()
        async with self.e_security_gates.use() as gate:
            await self.rec.wait_open()
            sent = self.rec.now()
            with self.rec.in_flight("enrol"):
                try:
                    result = await gate.transport.call("POST", "/v1/enrolments", EnrolmentResult, json=body,
                                                       headers={"Idempotency-Key": str(uuid.uuid4())},
                                                       repeatable=True)
                    obs = Obs("e_security_gate", "late_enrol", f"p{index}", p.flight, queued, sent, self.rec.now(),
                              201 if result.created else 200, "created" if result.created else "existing")
                except ApiError as exc:
                    result = None
                    obs = Obs("e_security_gate", "late_enrol", f"p{index}", p.flight, queued, sent, self.rec.now(),
                              exc.status, exc.code, ",".join(exc.problem.reasons)[:80])
                except TouchpointError as exc:
                    result = None
                    obs = Obs("e_security_gate", "late_enrol", f"p{index}", p.flight, queued, sent, self.rec.now(),
                              0, "no_answer", str(exc)[:80])
        self.rec.obs.append(obs)
        return None if result is None else result.token_id

    # ---- what the report needs of the day ------------------------------------------------------

    def travellers(self) -> list[Traveller]:
        return [Traveller(outcome=me.outcome or "unfinished", method=me.method, manual_reason=me.manual_reason,
                          staff=tuple(me.staff), fallback=tuple(me.fallback), roles=frozenset(p.roles),
                          token_id=str(me.token_id) if me.token_id else None, flight=p.flight)
                for p, me in zip(self.plan.passengers, self.people, strict=True)]

    def dcs_expected(self) -> Expected:
        """What the airlines' DCS must have heard of, from what the simulator saw happen."""
        out = Expected()
        for me in self.people:
            if me.token_id is None:
                continue
            if me.outcome == "boarded":
                out.boarded[str(me.token_id)] = me.method
            elif me.outcome == "opted_out":
                out.opted_out.add(str(me.token_id))
        for f in self.flights:
            if f.departed and f.id is not None:
                out.not_boarded[str(f.id)] = {
                    str(self.people[i].token_id) for i in f.plan.passengers
                    if self.people[i].token_id is not None and self.people[i].outcome not in ("boarded", "opted_out")}
        return out

    def dcs_targets(self, expected: Expected) -> set[tuple[str, str]]:
        return ({("passenger.boarded", t) for t in expected.boarded}
                | {("boarding.closed", f) for f in expected.not_boarded}
                | {("passenger.opted_out", t) for t in expected.opted_out})
