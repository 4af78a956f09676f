"""Typed async clients, one per kind of device. The reference for integrators.

    async with GateClient("http://ft.internal:8000", key) as gate:
        decision = await gate.identify(jpeg_bytes)
        if decision.proceed: open_gate(decision.passenger)

Each client owns a :class:`~touchpoints.transport.Transport` (timeouts, retries on 429/503 honouring
``Retry-After``); pass ``http=`` to share one connection pool between many devices in one process.
"""

from __future__ import annotations

import uuid
from typing import Any, Self

import httpx

from touchpoints.models import (
    Decision,
    EnrolmentRequest,
    EnrolmentResult,
    Flight,
    ManualBoarding,
    ManualBoardingRequest,
    NewFlight,
)
from touchpoints.transport import RetryPolicy, Transport


class DeviceClient:
    kind = "device"
    default_timeout = 10.0

    def __init__(self, base_url: str, api_key: str, *, timeout: float | None = None,
                 retry: RetryPolicy | None = None, http: httpx.AsyncClient | None = None) -> None:
        self.transport = Transport(base_url, api_key, timeout=timeout or self.default_timeout, retry=retry,
                                   http=http)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Enrols(DeviceClient):
    """A device that enrols passengers (``POST /v1/enrolments``)."""

    async def enrol(self, request: EnrolmentRequest, *, idempotency_key: str | None = None) -> EnrolmentResult:
        """201 → ``created=True``; 200 → the same token for a document already enrolled on the flight.

        Sent with an ``Idempotency-Key``, new for each call unless given: every retry of this call (a
        timeout, a dropped connection, 409 ``idempotency_key_in_progress``) repeats it, so the service
        enrols once and answers each try with the first answer. A new capture is a new call, a new key:
        the service refuses a key reused with another body (422 ``idempotency_key_reused``).
        """
        key = idempotency_key or str(uuid.uuid4())
        return await self.transport.call("POST", "/v1/enrolments", EnrolmentResult, json=request,
                                         headers={"Idempotency-Key": key}, repeatable=True)


class KioskClient(Enrols):
    """Check-in kiosk: document + booking + consent + live captures → a flight token."""

    kind = "kiosk"
    default_timeout = 30.0  # several captures, each analysed


class IdentifyClient(DeviceClient):
    """A touchpoint that asks "who is this?" with one camera frame."""

    async def identify(self, image: bytes, *, content_type: str = "image/jpeg",
                       boarding_pass: str | None = None) -> Decision:
        """``boarding_pass``: the pass's barcode text (IATA BCBP) for the 1:1 fallback; the face is
        then verified against the token the pass names (``no_token``, ``face_mismatch``)."""
        return await self._identify("/v1/identify", image, content_type, boarding_pass)

    async def _identify(self, path: str, image: bytes, content_type: str, boarding_pass: str | None) -> Decision:
        headers = {"Content-Type": content_type}
        if boarding_pass is not None:
            headers["Boarding-Pass"] = boarding_pass
        # Not repeatable: a decision may move the passenger's journey on (cleared, boarded).
        return await self.transport.call("POST", path, Decision, content=image, headers=headers)


class BagDropClient(IdentifyClient):
    """Self bag drop: proceed takes the passenger's bags (no journey step; immigration not needed)."""

    kind = "bag_drop"

    async def identify(self, image: bytes, *, content_type: str = "image/jpeg", bags: int | None = None,
                       boarding_pass: str | None = None) -> Decision:
        """``bags``: how many bags the passenger is dropping (0 to 9), recorded with the decision."""
        path = "/v1/identify" if bags is None else f"/v1/identify?bags={int(bags)}"
        return await self._identify(path, image, content_type, boarding_pass)


class ESecurityGateClient(IdentifyClient, Enrols):
    """e-Security Gate: airside entry before the e-channel; also enrols late (chip photo required).

    ``enrol`` is the kiosk's request, sent by a passenger who skipped the kiosk, with the passenger's
    ``boarding_pass`` (BCBP text) in place of ``booking``: the pass gives flight, booking reference
    and seat, and must name the document's holder (``boarding_pass_name_mismatch``)."""

    kind = "e_security_gate"
    default_timeout = 30.0  # a late enrolment analyses several captures


class EChannelClient(IdentifyClient):
    """Immigration e-channel: proceed clears the passenger's immigration step."""

    kind = "e_channel"


class LoungeClient(IdentifyClient):
    """Lounge entrance: proceed for lounge-eligible passengers who cleared immigration."""

    kind = "lounge"


class GateClient(IdentifyClient):
    """Boarding gate: proceed boards the passenger and carries name, seat and flight for the agent."""

    kind = "gate"

    async def board_manually(self, token_id: uuid.UUID | None, agent_id: str, reason_code: str, *,
                             boarding_pass: str | None = None,
                             idempotency_key: str | None = None) -> ManualBoarding:
        """The agent checked the document of a passenger the gate referred: board them by hand.

        Name the passenger by ``token_id`` or by ``boarding_pass`` (the pass's barcode text, IATA
        BCBP; ``token_id=None``): exactly one. A pass naming no live token is 404 ``no_token``.

        The gate's rules still apply: a refusal raises ``ApiError`` with status 409 and ``code`` the
        refer reason the gate would give (``see_officer``: send them to an officer; ``wrong_flight``,
        ``already_boarded``, ``immigration_not_cleared``, ``token_ended``, ``flight_closed``,
        ``state_changed``). Sent with an ``Idempotency-Key`` (new per call unless given), so a retry
        after a lost answer gets the first answer, not ``already_boarded``.
        """
        key = idempotency_key or str(uuid.uuid4())
        body = ManualBoardingRequest(agent_id=agent_id, reason_code=reason_code, token_id=token_id,
                                     boarding_pass=boarding_pass)
        return await self.transport.call("POST", "/v1/manual-boardings", ManualBoarding, json=body,
                                         headers={"Idempotency-Key": key}, repeatable=True)


class AdminClient(DeviceClient):
    """Flights and their states (admin key). Routes added by later versions are called by path."""

    kind = "admin"

    async def create_flight(self, flight: NewFlight) -> Flight:
        return await self.transport.call("POST", "/v1/flights", Flight, json=flight)

    async def get_flight(self, flight_id: uuid.UUID) -> Flight:
        return await self.transport.call("GET", f"/v1/flights/{flight_id}", Flight, repeatable=True)

    async def set_state(self, flight_id: uuid.UUID, state: str) -> Flight:
        # Repeatable: the service answers a move to the current state with the flight, unchanged.
        return await self.transport.call("POST", f"/v1/flights/{flight_id}/state", Flight,
                                         json={"state": state}, repeatable=True)

    async def post(self, path: str, body: Any) -> Any:
        response = await self.transport.request("POST", path, json=body)
        return response.json() if response.content else None

    async def get(self, path: str) -> Any:
        return (await self.transport.request("GET", path, repeatable=True)).json()


CLIENTS: dict[str, type[DeviceClient]] = {
    c.kind: c for c in (KioskClient, BagDropClient, ESecurityGateClient, EChannelClient, LoungeClient, GateClient,
                        AdminClient)
}
