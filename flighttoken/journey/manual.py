"""Staff processing at the gate (issue 20, part 5): a gate agent boards a passenger by hand.

The agent has checked the passenger's document; the service still applies the gate's own journey
rules (``check_journey`` with the agent's gate device, journey/rules.py): the token's flight boards
at this gate now, it has not boarded, an international passenger has cleared immigration, it has not
ended, and it is not on hold. A hold of any kind (watchlist hit, random officer referral, airline
staff hold) is refused with the gate's own ``see_officer``: a manual boarding never bypasses one,
and the agent learns no more about it than the gate does.

Answers: 201 with the boarding; a refusal is 409 problem+json whose ``code`` is the refer reason the
gate would have given (``see_officer``, ``wrong_flight``, ``already_boarded``,
``immigration_not_cleared``, ``token_ended``, ``flight_closed``, ``state_changed``), changes nothing
and is audited. Who: the gate device's key (scoped to its gate) with the agent's id in the body.

The passenger is named by ``token_id`` or by ``boarding_pass`` (IATA BCBP text; exactly one): the
pass names the live token under its PNR and name on its flight that day (journey/boarding_pass.py),
preferring one on a flight boarding at this gate; a pass naming none is 404 ``no_token``. A token on
another flight or another day is then refused by the gate's rules like one named by id
(``wrong_flight``): a pass never boards anyone but the token it names, on the flight boarding here.

The move is one statement (db/queries/manual_boardings.py) that boards only from the state read,
not on hold, while the flight still boards at this gate; its ``token_moved`` sync event goes out at
commit, so every instance drops the token from the gate's gallery, as after a face boarding. The
airline's DCS hears of it from a ``passenger.boarded`` event (``method: manual``, with the agent's
reason code) queued in the same transaction (flighttoken/dcs/outbox.py).

No journey event is written: ``journey_events`` are face decisions, and the ops dashboard's
per-touchpoint decisions, refer rate and identify latency (db/queries/operations.py) read them all;
a manual boarding there would count a referred passenger twice and add a latency that is no
decision's. Manual boardings are counted from ``manual_boardings`` (progress, dashboard) and audited.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import structlog

from flighttoken.boardingpass import bcbp
from flighttoken.db.connection import Connection
from flighttoken.db.queries import audit
from flighttoken.db.queries import manual_boardings as q
from flighttoken.db.queries import tokens as token_q
from flighttoken.dcs import outbox
from flighttoken.devices.model import Device
from flighttoken.errors import Conflict, NotFound, Unprocessable
from flighttoken.journey.boarding_pass import tokens_for_pass
from flighttoken.journey.rules import check_journey, token_at_touchpoint
from flighttoken.journey.schemas import ManualBoarding, ManualBoardingRequest, PassengerView
from flighttoken.services import Services
from flighttoken.sync.apply import restate
from flighttoken.sync.events import publish
from flighttoken.vocabulary import BoardingMethod, DcsEvent, DecisionReason, FlightState, TokenState

log = structlog.get_logger(__name__)
ACTION = "token.boarded_manually"
# What a refused manual boarding tells the agent: the same words a gate's refer would show.
_REFUSALS = {
    DecisionReason.SEE_OFFICER: "send the passenger to an officer",
    DecisionReason.WRONG_FLIGHT: "this passenger's flight is not boarding at this gate",
    DecisionReason.ALREADY_BOARDED: "this passenger has already boarded",
    DecisionReason.IMMIGRATION_NOT_CLEARED: "this passenger has not cleared immigration",
    DecisionReason.TOKEN_ENDED: "this passenger's token has ended",
    DecisionReason.FLIGHT_CLOSED: "this passenger's flight is closed",
    DecisionReason.STATE_CHANGED: "the passenger's journey changed meanwhile; look them up again",
}


async def passenger_of(conn: Connection, services: Services, device: Device, request: ManualBoardingRequest,
                       now: datetime) -> uuid.UUID:
    """The token the request names: its ``token_id``, or the one its ``boarding_pass`` names."""
    if request.token_id is None and request.boarding_pass is None:
        raise Unprocessable("name the passenger: give token_id or boarding_pass", code="passenger_required")
    if request.token_id is not None and request.boarding_pass is not None:
        raise Unprocessable("name the passenger once: token_id or boarding_pass, not both",
                            code="passenger_named_twice")
    if request.token_id is not None:
        return request.token_id
    assert request.boarding_pass is not None
    boarding_pass = bcbp.parse(request.boarding_pass)  # malformed: 422 invalid_boarding_pass, nothing read
    named = await tokens_for_pass(conn, services.settings, boarding_pass, now)
    here = [t for t in named if t.flight.state == FlightState.BOARDING and t.flight.gate == device.gate]
    # A token elsewhere (another gate, another day) is named only to be refused by the gate's rules.
    ids = {t.token["id"] for t in (here or named)}
    if not ids:
        await audit.record(conn, actor=f"device:{device.id}", action=ACTION, outcome="refused",
                           detail={"agent_id": request.agent_id, "reason_code": request.reason_code.value,
                                   "refusal": DecisionReason.NO_TOKEN.value, "by": "boarding_pass"})
        log.info("manual_boarding_refused", device=str(device.id), gate=device.gate, refusal="no_token")
        raise NotFound("the boarding pass names no passenger enrolled on its flight that day", code="no_token")
    if len(ids) > 1:  # two passengers of one name on one booking: the pass cannot tell them apart
        raise Conflict("the boarding pass names more than one passenger: board by token_id",
                       code="boarding_pass_ambiguous")
    return ids.pop()


async def board(services: Services, device: Device, request: ManualBoardingRequest) -> ManualBoarding:
    """Board the named passenger by hand at ``device``'s gate, or refuse (see the module docstring)."""
    now = datetime.now(UTC)
    horizon = timedelta(seconds=services.settings.galleries.clearance_horizon_s)
    async with services.db().acquire() as conn:
        token_id = await passenger_of(conn, services, device, request, now)
        row = await token_q.with_flight(conn, token_id)
        if row is None:
            raise NotFound("no such token", code="token_not_found")
        reason = check_journey(device, token_at_touchpoint(row), now, horizon).reason
        if reason != DecisionReason.MATCHED:
            await _refuse(conn, device, request, row, reason)
        async with conn.transaction():
            done = await q.board(conn, token_id=token_id, expected_state=row["state"], gate=device.gate or "",
                                 device_id=device.id, agent_id=request.agent_id,
                                 reason_code=request.reason_code.value)
            if done is not None:
                # Other instances move it out of their gate galleries at commit (sync/apply.py token_moved).
                await publish(conn, services.instance_id, "token_moved", token_ids=[token_id],
                              payload={"state": TokenState.BOARDED.value})
                await outbox.enqueue(conn, airline=done.airline, kind=DcsEvent.PASSENGER_BOARDED, payload={
                    **outbox.boarded_payload(
                        token_id=token_id, flight_id=done.flight_id, flight=f"{done.airline}{done.number}",
                        scheduled_departure=done.scheduled_departure, booking_reference=done.booking_reference,
                        seat=done.seat, boarded_at=done.at, method=BoardingMethod.MANUAL, gate=device.gate),
                    # The airline's DCS is told who boarded them by hand, as the audit log is.
                    "reason_code": request.reason_code.value, "agent_id": request.agent_id})
        if done is None:
            await _refuse(conn, device, request, row, DecisionReason.STATE_CHANGED)
    await restate(services, token_id, state=TokenState.BOARDED)
    log.info("manual_boarding", device=str(device.id), gate=device.gate, reason_code=request.reason_code.value,
             by="boarding_pass" if request.boarding_pass is not None else "token_id")
    return ManualBoarding(
        id=done.id, token_id=token_id, flight_id=done.flight_id, agent_id=request.agent_id,
        reason_code=request.reason_code, boarded_at=done.at,
        passenger=PassengerView(name=f"{row['surname']}, {row['given_names']}".strip(", "), seat=row["seat"],
                                flight=f"{row['airline']}{row['number']}"))


async def _refuse(conn: Connection, device: Device, request: ManualBoardingRequest, row,
                  reason: DecisionReason) -> NoReturn:
    """Audit the refusal (who tried to board whom, and the refer reason) and answer 409."""
    await audit.record(conn, actor=f"device:{device.id}", action=ACTION, outcome="refused",
                       flight_id=row["flight_id"], token_id=row["id"],
                       detail={"agent_id": request.agent_id, "reason_code": request.reason_code.value,
                               "refusal": reason.value})
    log.info("manual_boarding_refused", device=str(device.id), gate=device.gate, refusal=reason.value)
    raise Conflict(_REFUSALS.get(reason, "this passenger cannot board here"), code=reason.value)
