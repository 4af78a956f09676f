"""The journey's HTTP routes: enrolment (kiosks, e-Security Gates) and identify (every touchpoint)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter

from flighttoken.decisions.policy import ENROLMENT_POINTS, TOUCHPOINTS
from flighttoken.devices.auth import DeviceRequest, allow
from flighttoken.devices.model import DeviceKind
from flighttoken.errors import InvalidRequest, Unprocessable
from flighttoken.journey import enrolment, idempotency, identify, manual, pass_identify
from flighttoken.journey.schemas import (
    Decision,
    EnrolmentRequest,
    EnrolmentResult,
    ManualBoarding,
    ManualBoardingRequest,
)
from flighttoken.metrics import record_decision
from flighttoken.services import Services

IMAGE_TYPES = ("image/jpeg", "image/png", "application/octet-stream")
BOARDING_PASS_HEADER = "boarding-pass"


class EnrolmentController(Controller):
    path = "/v1/enrolments"
    tags = ["journey"]
    guards = [allow(*ENROLMENT_POINTS)]  # the kinds of the enrolment policy table

    @post("/", summary="Enrol a passenger at a check-in kiosk or (late) at an e-Security Gate",
          description="201 with a new token; 200 with the same token when this document is already "
                      "enrolled on this flight. A kiosk sends the airline's `booking` (422 `booking_required`). "
                      "An e-Security Gate (late enrolment) sends the chip photo (DG2; else 422 "
                      "`chip_photo_required`) and the passenger's `boarding_pass` (IATA BCBP text) instead of "
                      "a booking (422 `boarding_pass_required`): flight, booking reference and seat come from "
                      "it; a pass for another date, an unknown flight or another person is 422 "
                      "`boarding_pass_other_date`, `boarding_pass_unknown_flight`, "
                      "`boarding_pass_name_mismatch`. With an `Idempotency-Key` header (per device, 24 h), a "
                      "retry with the same body gets the first answer again and writes nothing; the same "
                      "key with another body is 422 `idempotency_key_reused`.",
          request_max_body_size=32 * 1024 * 1024)
    async def enrol(self, data: JSONBody[EnrolmentRequest], services: NamedDependency[Services],
                    request: DeviceRequest) -> Response[EnrolmentResult]:
        async def execute() -> tuple[int, EnrolmentResult]:
            result = await enrolment.enrol(services, request.user, data)
            return (201 if result.created else 200), result

        return await idempotency.once(services, request, "enrolment", execute)


class IdentifyController(Controller):
    path = "/v1/identify"
    tags = ["journey"]
    guards = [allow(*TOUCHPOINTS)]  # the touchpoint kinds of the policy table

    @post("/", status_code=200, summary="Who is this? One capture in, proceed or refer out",
          description="Send the camera frame as the raw request body (Content-Type image/jpeg or image/png). "
                      "Boarding-pass fallback: add the pass's barcode text (IATA BCBP, format M) in a "
                      "`Boarding-Pass` header; the face is then verified 1:1 against the token the pass "
                      "names (`no_token`, `face_mismatch`); a malformed pass is 422 `invalid_boarding_pass` "
                      "naming the item (`field`). "
                      "A bag drop may report the bags it takes (`bags`, 0 to 9), recorded with the "
                      "decision; from any other touchpoint `bags` is 422 `bags_not_accepted`.")
    async def identify(self, request: DeviceRequest, services: NamedDependency[Services],
                       bags: Annotated[int | None, QueryParameter(
                           description="bag drops only: bags the passenger is dropping (0-9)")] = None) -> Decision:
        # The frame is the raw body: no base64 or JSON to decode on the hot path.
        # Media types are case-insensitive and may carry parameters (RFC 9110 §8.3.1).
        if request.headers.get("content-type", "").split(";")[0].strip().lower() not in IMAGE_TYPES:
            raise InvalidRequest("send the frame as image/jpeg or image/png", code="unsupported_media_type",
                                 status=415)
        _check_bags(request, bags)
        pass_text = request.headers.get(BOARDING_PASS_HEADER)
        if pass_text is None:
            decision = await identify.identify(services, request.user, await request.body(), bags=bags)
        else:
            decision = await pass_identify.identify_with_pass(services, request.user, await request.body(),
                                                              pass_text, bags)
        record_decision(request, request.user.kind.value, decision.decision, decision.reason)
        return decision


class ManualBoardingController(Controller):
    path = "/v1/manual-boardings"
    tags = ["journey"]
    # The gate's key: scoped to its gate, so an agent boards only flights boarding there.
    guards = [allow(DeviceKind.GATE)]

    @post("/", summary="A gate agent boards a passenger by hand, after checking the document",
          description="The gate's journey rules still apply and a hold is never bypassed: a refusal is 409 "
                      "with `code` the refer reason the gate would give (`see_officer`, `wrong_flight`, "
                      "`already_boarded`, `immigration_not_cleared`, `token_ended`, `flight_closed`, "
                      "`state_changed`) and changes nothing. Name the passenger by `token_id` or by "
                      "`boarding_pass` (IATA BCBP text), exactly one (422 `passenger_required`, "
                      "`passenger_named_twice`); a malformed pass is 422 `invalid_boarding_pass`, a pass naming "
                      "no live token 404 `no_token`. 404 `token_not_found`. Honours an `Idempotency-Key` (per device, "
                      "24 h): a retry after a lost answer gets the first answer again.")
    async def board(self, data: JSONBody[ManualBoardingRequest], services: NamedDependency[Services],
                    request: DeviceRequest) -> Response[ManualBoarding]:
        async def execute() -> tuple[int, ManualBoarding]:
            return 201, await manual.board(services, request.user, data)

        return await idempotency.once(services, request, "manual_boarding", execute)


MAX_BAGS = 9


def _check_bags(request: DeviceRequest, bags: int | None) -> None:
    """Before anything runs: a bag count only from a kind that reports bags, and within 0..9."""
    if bags is None:
        return
    if not TOUCHPOINTS[request.user.kind].reports_bags:
        raise Unprocessable(f"a {request.user.kind.value} does not report bags", code="bags_not_accepted")
    if not 0 <= bags <= MAX_BAGS:
        raise Unprocessable(f"bags must be 0 to {MAX_BAGS}", code="invalid_bags")
