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

The move is one statement (db/queries/manual_boardings.py) that boards only from the state read,
not on hold, while the flight still boards at this gate; its ``token_moved`` sync event goes out at
commit, so every instance drops the token from the gate's gallery, as after a face boarding.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import structlog

from flighttoken.db.connection import Connection
from flighttoken.db.queries import audit
from flighttoken.db.queries import manual_boardings as q
from flighttoken.db.queries import tokens as token_q
from flighttoken.devices.model import Device
from flighttoken.errors import Conflict, NotFound, Unprocessable
from flighttoken.journey.rules import check_journey, token_at_touchpoint
from flighttoken.journey.schemas import ManualBoarding, ManualBoardingRequest, PassengerView
from flighttoken.services import Services
from flighttoken.sync.apply import restate
from flighttoken.sync.events import publish
from flighttoken.vocabulary import DecisionReason, TokenState

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


def passenger_of(request: ManualBoardingRequest) -> uuid.UUID:
    """The token the request names. The seam for the boarding pass: once BCBP look-up exists, a
    ``boarding_pass`` names the token here instead (and a pass naming none is ``no_token``)."""
    if request.token_id is None:
        raise Unprocessable("name the passenger: give token_id", code="passenger_required")
    return request.token_id


async def board(services: Services, device: Device, request: ManualBoardingRequest) -> ManualBoarding:
    """Board the named passenger by hand at ``device``'s gate, or refuse (see the module docstring)."""
    token_id = passenger_of(request)
    now = datetime.now(UTC)
    horizon = timedelta(seconds=services.settings.galleries.clearance_horizon_s)
    async with services.db().acquire() as conn:
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
                # The DCS outbox's "boarded" event (issue 20, part 6) belongs here, in this transaction.
        if done is None:
            await _refuse(conn, device, request, row, DecisionReason.STATE_CHANGED)
    await restate(services, token_id, state=TokenState.BOARDED)
    log.info("manual_boarding", device=str(device.id), gate=device.gate, reason_code=request.reason_code.value)
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
