"""Staff holds: an airline agent or admin stops a token at every touchpoint ("see an officer").

They exist beside the authority's holds on purpose: touchpoints say ``see_officer`` for any hold,
so a lounge or gate that sees it cannot tell a document check from an officer referral. Staff
place and release only their own kind of hold; a token stays held while any hold is in force.
The answer also says whether an officer referral is in force (``officer_referral``), so staff can
explain a see_officer, never why: random referrals and watchlist hits look the same (issue 17).
An officer's referral is placed with its alert (``db/queries/watchlist.py``) and released here when
the alert is dismissed (:func:`release_alert_holds`).
"""

from __future__ import annotations

import uuid

from flighttoken.db.queries import audit
from flighttoken.db.queries import tokens as q
from flighttoken.devices.model import Device, DeviceKind
from flighttoken.errors import NotFound
from flighttoken.services import Services
from flighttoken.tokens.schemas import HoldState, StaffHoldView


async def _token(conn, device: Device, token_id: uuid.UUID):
    row = await q.token_for_staff(conn, token_id)
    # Another airline's token is "not found", as on every airline-scoped endpoint.
    if row is None or (device.kind is DeviceKind.AIRLINE_OPS and row["airline"] != device.airline):
        raise NotFound("no such token", code="token_not_found")
    return row


async def place_in(conn, *, token_id: uuid.UUID, flight_id: uuid.UUID, reason: str, actor: str) -> bool:
    """Place a staff hold inside the caller's transaction (staff, or the service itself on suspected
    enrolment fraud: journey/enrolment.py); audited. False when one was already in force."""
    if not await q.place_staff_hold(conn, token_id, reason, actor):
        return False
    await q.sync_on_hold(conn, token_id)
    await audit.record(conn, actor=actor, action="token.hold", outcome="ok", flight_id=flight_id,
                       token_id=token_id, detail={"reason": reason})
    return True


async def release_alert_holds(conn, alert_id: int, released_by: str) -> list[uuid.UUID]:
    """Release the officer referral an alert placed (inside the caller's transaction); the tokens
    released. A token stays on hold while any other hold is in force."""
    released = await q.release_alert_hold(conn, alert_id, released_by)
    for token_id in released:
        await q.sync_on_hold(conn, token_id)
    return released


async def place(services: Services, device: Device, token_id: uuid.UUID, reason: str) -> HoldState:
    async with services.db().acquire() as conn, conn.transaction():
        row = await _token(conn, device, token_id)
        await place_in(conn, token_id=token_id, flight_id=row["flight_id"], reason=reason,
                       actor=f"device:{device.id}")
        return await _state(conn, token_id)


async def read(services: Services, device: Device, token_id: uuid.UUID) -> StaffHoldView:
    """The staff hold in force on a token, if any: what the airline sees of a hold the service placed."""
    async with services.db().acquire() as conn, conn.transaction():
        await _token(conn, device, token_id)
        row = await q.staff_hold_of(conn, token_id)
        referral = (await _state(conn, token_id)).officer_referral
    if row is None:
        return StaffHoldView(token_id=token_id, staff_hold=False, officer_referral=referral)
    return StaffHoldView(token_id=token_id, staff_hold=True, officer_referral=referral, reason=row["reason"],
                         placed_by=row["placed_by"], placed_at=row["placed_at"])


async def release(services: Services, device: Device, token_id: uuid.UUID) -> HoldState:
    async with services.db().acquire() as conn, conn.transaction():
        row = await _token(conn, device, token_id)
        if await q.release_staff_hold(conn, token_id, f"device:{device.id}"):
            await q.sync_on_hold(conn, token_id)
            await audit.record(conn, actor=f"device:{device.id}", action="token.hold.release", outcome="ok",
                               flight_id=row["flight_id"], token_id=token_id)
        return await _state(conn, token_id)


async def _state(conn, token_id: uuid.UUID) -> HoldState:
    row = await q.referral_state(conn, token_id)
    return HoldState(token_id=token_id, staff_hold=row["staff_hold"], officer_referral=row["officer_referral"])
