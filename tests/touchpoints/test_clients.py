"""The device clients against a scripted HTTP server on a real port: retries on 429/503 honouring
Retry-After (bounded), no retry where a repeat could do harm, idempotency keys, typed answers, CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime

import pytest

from flighttoken.testing import free_port
from tests.touchpoints.stub import Reply, problem, stub_service
from touchpoints import cli
from touchpoints.clients import GateClient, KioskClient
from touchpoints.models import Booking, Consent, Decision, EnrolmentRequest, EnrolmentResult, TravelDocument
from touchpoints.transport import ApiError, RetryPolicy, TouchpointError, Transport, retry_after_seconds

pytestmark = pytest.mark.integration  # a real HTTP server (the scripted stub), on loopback

PROCEED = {"decision": "proceed", "reason": "matched", "event_id": 7, "token_id": str(uuid.uuid4()),
           "passenger": {"name": "CHAN, TAI MAN", "seat": "42A", "flight": "CX884"}, "future_field": 1}
REFER = {"decision": "refer", "reason": "no_match", "event_id": 8}
FLIGHT = uuid.uuid4()


def enrolment_result(created: bool = True) -> dict:
    return {"token_id": str(uuid.uuid4()), "state": "enrolled", "flight_id": str(FLIGHT), "created": created,
            "enrolled_at": datetime.now(UTC).isoformat(), "template_updated": True}


def enrolment(number: str = "K1234567", flight: uuid.UUID = FLIGHT,
              capture: bytes = b"\xff\xd8jpeg") -> EnrolmentRequest:
    return EnrolmentRequest(
        document=TravelDocument(type="P", number=number, issuing_state="HKG", surname="CHAN", given_names="TAI MAN",
                                nationality="HKG", date_of_birth=date(1990, 1, 1), expiry=date(2031, 1, 1)),
        booking=Booking(flight_id=flight, booking_reference="ABC123", seat="42A", lounge_eligible=True),
        captures=[capture], consent=Consent.accepted("terms", "v1"))


class Sleeps:
    """Stands in for asyncio.sleep: records each wait, waits for none."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def transport(base_url: str, sleeps: Sleeps, **policy) -> Transport:
    return Transport(base_url, "ftk_test", timeout=5.0, retry=RetryPolicy(**policy), sleep=sleeps)


async def test_a_503_is_retried_after_its_retry_after_and_the_answer_is_typed() -> None:
    async with stub_service() as stub:
        stub.on("/v1/identify", Reply(503, problem(503, "database_unavailable"), {"Retry-After": "2"}),
                Reply(200, PROCEED))
        sleeps = Sleeps()
        t = transport(stub.base_url, sleeps)
        d = await t.call("POST", "/v1/identify", Decision, content=b"jpeg", headers={"Content-Type": "image/jpeg"})
        await t.aclose()
    assert d.proceed and d.passenger is not None and d.passenger.seat == "42A"
    assert d.token_id == uuid.UUID(PROCEED["token_id"])
    assert sleeps.waits == [2.0]
    assert len(stub.hits("/v1/identify")) == 2
    assert dict(t.retries) == {"503": 1}
    assert stub.seen[0].headers["authorization"] == "Bearer ftk_test"


async def test_a_429_with_an_http_date_is_honoured_but_capped() -> None:
    far = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    async with stub_service() as stub:
        stub.on("/v1/identify", Reply(429, problem(429, "rate_limited"), {"Retry-After": far}), Reply(200, REFER))
        sleeps = Sleeps()
        async with transport(stub.base_url, sleeps, max_retry_after_s=10.0) as t:
            d = await t.call("POST", "/v1/identify", Decision, content=b"jpeg")
    assert (d.decision, d.reason) == ("refer", "no_match")
    assert sleeps.waits == [10.0]


async def test_retries_stop_after_max_attempts_with_the_services_error() -> None:
    async with stub_service() as stub:
        stub.on("/v1/identify", Reply(503, problem(503, "database_unavailable"), {"Retry-After": "1"}))
        sleeps = Sleeps()
        async with transport(stub.base_url, sleeps, max_attempts=3) as t:
            with pytest.raises(ApiError) as caught:
                await t.call("POST", "/v1/identify", Decision, content=b"jpeg")
    assert (caught.value.status, caught.value.code) == (503, "database_unavailable")
    assert caught.value.retry_after == pytest.approx(1.0)
    assert len(stub.hits("/v1/identify")) == 3
    assert sleeps.waits == [1.0, 1.0]


async def test_retries_stop_when_the_wait_budget_is_spent() -> None:
    async with stub_service() as stub:
        stub.on("/v1/identify", Reply(503, problem(503, "unavailable"), {"Retry-After": "8"}))
        sleeps = Sleeps()
        async with transport(stub.base_url, sleeps, max_attempts=10, max_total_wait_s=20.0) as t:
            with pytest.raises(ApiError):
                await t.call("POST", "/v1/identify", Decision, content=b"jpeg")
    assert sleeps.waits == [8.0, 8.0]  # a third wait would pass 20 s
    assert len(stub.hits("/v1/identify")) == 3


async def test_without_retry_after_the_client_backs_off_exponentially() -> None:
    busy = Reply(503, problem(503, "unavailable"))
    async with stub_service() as stub:
        stub.on("/v1/identify", busy, busy, busy, Reply(200, REFER))
        sleeps = Sleeps()
        async with transport(stub.base_url, sleeps, backoff_s=0.2) as t:
            await t.call("POST", "/v1/identify", Decision, content=b"jpeg")
    assert len(sleeps.waits) == 3
    for k, wait in enumerate(sleeps.waits):  # 0.2 * 2^k, jittered by x0.5 .. x1.5
        assert 0.1 * 2 ** k <= wait <= 0.3 * 2 ** k


async def test_client_errors_are_not_retried_and_carry_code_and_reasons() -> None:
    async with stub_service() as stub:
        stub.on("/v1/enrolments", Reply(422, problem(422, "capture_rejected", reasons=["too_blurry"])))
        sleeps = Sleeps()
        async with KioskClient(stub.base_url, "ftk_kiosk") as kiosk:
            kiosk.transport._sleep = sleeps
            with pytest.raises(ApiError) as caught:
                await kiosk.enrol(enrolment())
    assert (caught.value.status, caught.value.code) == (422, "capture_rejected")
    assert caught.value.problem.reasons == ["too_blurry"]
    assert len(stub.hits("/v1/enrolments")) == 1 and sleeps.waits == []


async def test_an_error_page_that_is_not_problem_json_still_gives_status_and_text() -> None:
    async with stub_service() as stub:
        stub.on("/v1/identify", Reply(502, "<html>bad gateway</html>"))
        async with GateClient(stub.base_url, "ftk_gate") as gate:
            with pytest.raises(ApiError) as caught:
                await gate.identify(b"jpeg")
    assert (caught.value.status, caught.value.code) == (502, "http_502")


async def test_an_identify_that_timed_out_is_not_repeated() -> None:
    async with stub_service() as stub:
        stub.on("/v1/identify", Reply(200, PROCEED, delay_s=1.0))
        async with GateClient(stub.base_url, "ftk_gate", timeout=0.2) as gate:
            with pytest.raises(TouchpointError, match="not retried"):
                await gate.identify(b"jpeg")
        await asyncio.sleep(1.0)  # let the stub finish the slow answer before it shuts down
    # A repeat could board the passenger twice or answer "already_boarded": one request only.
    assert len(stub.hits("/v1/identify")) == 1


async def test_an_enrolment_that_timed_out_is_repeated_with_the_same_idempotency_key() -> None:
    async with stub_service() as stub:
        stub.on("/v1/enrolments", Reply(201, enrolment_result(), delay_s=1.0), Reply(200, enrolment_result(False)))
        async with KioskClient(stub.base_url, "ftk_kiosk", timeout=0.2) as kiosk:
            kiosk.transport._sleep = Sleeps()
            result = await kiosk.enrol(enrolment())
        await asyncio.sleep(1.0)
    assert isinstance(result, EnrolmentResult) and result.created is False
    keys = {h.headers["idempotency-key"] for h in stub.hits("/v1/enrolments")}
    assert len(stub.hits("/v1/enrolments")) == 2 and len(keys) == 1


async def test_a_refused_connection_is_retried_then_reported() -> None:
    sleeps = Sleeps()
    async with transport(f"http://127.0.0.1:{free_port()}", sleeps, max_attempts=3) as t:
        with pytest.raises(TouchpointError, match="cannot reach"):
            await t.call("POST", "/v1/identify", Decision, content=b"jpeg")
    assert dict(t.retries) == {"connect": 2}


async def test_enrolment_body_and_idempotency_key() -> None:
    async with stub_service() as stub:
        stub.on("/v1/enrolments", Reply(201, enrolment_result()))
        async with KioskClient(stub.base_url, "ftk_kiosk") as kiosk:
            result = await kiosk.enrol(enrolment(capture=b"\xff\xd8first"))
    sent = stub.hits("/v1/enrolments")[0]
    body = json.loads(sent.body)
    assert result.created is True
    assert base64.b64decode(body["captures"][0]) == b"\xff\xd8first"
    assert body["document"]["date_of_birth"] == "1990-01-01" and body["booking"]["flight_id"] == str(FLIGHT)
    assert len(body["consent"]["terms_sha256"]) == 64 and "chip_photo" not in body
    # Each enrol() call is one attempt with its own key: a new capture is a new request, never a
    # "reused key" the service would refuse.
    assert uuid.UUID(sent.headers["idempotency-key"]).version == 4


async def test_each_enrolment_call_sends_a_new_idempotency_key_unless_given() -> None:
    async with stub_service() as stub:
        stub.on("/v1/enrolments", Reply(201, enrolment_result()), Reply(200, enrolment_result(False)),
                Reply(200, enrolment_result(False)))
        async with KioskClient(stub.base_url, "ftk_kiosk") as kiosk:
            await kiosk.enrol(enrolment())
            await kiosk.enrol(enrolment())
            await kiosk.enrol(enrolment(), idempotency_key="kiosk-7:attempt-1")
    keys = [h.headers["idempotency-key"] for h in stub.hits("/v1/enrolments")]
    assert len(set(keys[:2])) == 2 and keys[2] == "kiosk-7:attempt-1"


async def test_an_enrolment_still_running_elsewhere_is_retried_with_the_same_key() -> None:
    async with stub_service() as stub:
        stub.on("/v1/enrolments", Reply(409, problem(409, "idempotency_key_in_progress"), {"Retry-After": "1"}),
                Reply(201, enrolment_result()))
        async with KioskClient(stub.base_url, "ftk_kiosk") as kiosk:
            kiosk.transport._sleep = sleeps = Sleeps()
            result = await kiosk.enrol(enrolment())
    assert result.created is True and sleeps.waits == [1.0]
    assert len({h.headers["idempotency-key"] for h in stub.hits("/v1/enrolments")}) == 1
    assert dict(kiosk.transport.retries) == {"409": 1}


async def test_another_409_is_not_retried() -> None:
    async with stub_service() as stub:
        stub.on("/v1/enrolments", Reply(409, problem(409, "face_already_enrolled")))
        async with KioskClient(stub.base_url, "ftk_kiosk") as kiosk:
            with pytest.raises(ApiError) as refused:
                await kiosk.enrol(enrolment())
    assert refused.value.code == "face_already_enrolled" and len(stub.hits("/v1/enrolments")) == 1


def test_retry_after_values() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("3", now) == pytest.approx(3.0)
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == pytest.approx(30.0)
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == pytest.approx(0.0)
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


# ---- the command line ----------------------------------------------------------------------------


async def test_gate_command_prints_the_decision_and_exits_by_it(tmp_path, capsys) -> None:
    photo = tmp_path / "frame.jpg"
    photo.write_bytes(b"\xff\xd8frame")
    async with stub_service() as stub:
        stub.on("/v1/identify", Reply(200, PROCEED), Reply(200, REFER))
        args = ["gate", "--url", stub.base_url, "--key", "ftk_gate", str(photo)]
        first = await asyncio.to_thread(cli.main, args)
        second = await asyncio.to_thread(cli.main, [*args, "--json"])
    out = capsys.readouterr().out.splitlines()
    assert first == cli.EXIT_PROCEED and out[0].split() == ["PROCEED", "matched", "CHAN,", "TAI", "MAN", "seat",
                                                            "42A", "CX884"]
    assert second == cli.EXIT_REFER and json.loads(out[1])["reason"] == "no_match"
    assert stub.seen[0].headers["content-type"] == "image/jpeg" and stub.seen[0].body == b"\xff\xd8frame"


async def test_commands_report_service_errors_and_a_missing_key(tmp_path, capsys) -> None:
    photo = tmp_path / "frame.jpg"
    photo.write_bytes(b"\xff\xd8frame")
    async with stub_service() as stub:
        stub.on("/v1/identify", Reply(403, problem(403, "forbidden")))
        code = await asyncio.to_thread(cli.main, ["e-channel", "--url", stub.base_url, "--key", "k", str(photo)])
        no_key = await asyncio.to_thread(cli.main, ["lounge", "--url", stub.base_url, "--key", "", str(photo)])
    assert code == cli.EXIT_ERROR and "403 forbidden" in capsys.readouterr().err
    assert no_key == cli.EXIT_USAGE and len(stub.seen) == 1


async def test_kiosk_command_enrols(tmp_path, capsys) -> None:
    capture, terms = tmp_path / "capture.jpg", tmp_path / "terms.txt"
    capture.write_bytes(b"\xff\xd8capture")
    terms.write_text("terms v1")
    async with stub_service() as stub:
        stub.on("/v1/enrolments", Reply(201, enrolment_result()))
        code = await asyncio.to_thread(cli.main, [
            "kiosk", "--url", stub.base_url, "--key", "ftk_kiosk", "--flight", str(FLIGHT),
            "--booking-reference", "ABC123", "--document-number", "K1234567", "--issuing-state", "HKG",
            "--surname", "CHAN", "--date-of-birth", "1990-01-01", "--expiry", "2031-01-01",
            "--terms-file", str(terms), "--terms-version", "v1", str(capture)])
    assert code == cli.EXIT_PROCEED and capsys.readouterr().out.startswith("ENROLLED")
    body = json.loads(stub.hits("/v1/enrolments")[0].body)
    assert body["document"]["nationality"] == "HKG" and body["booking"]["lounge_eligible"] is False


async def test_late_enrol_sends_the_boarding_pass_in_place_of_the_booking(tmp_path, capsys) -> None:
    capture, chip, terms = tmp_path / "capture.jpg", tmp_path / "dg2.jpg", tmp_path / "terms.txt"
    capture.write_bytes(b"\xff\xd8capture")
    chip.write_bytes(b"\xff\xd8chip")
    terms.write_text("terms v1")
    boarding_pass = "M1CHAN/TAI MAN        EABC123 HKGLAXCX 0884 123Y042A0025 100"
    common = ["--document-number", "K1234567", "--issuing-state", "HKG", "--surname", "CHAN", "--date-of-birth",
              "1990-01-01", "--expiry", "2031-01-01", "--terms-file", str(terms), "--terms-version", "v1"]
    async with stub_service() as stub:
        stub.on("/v1/enrolments", Reply(201, enrolment_result()))
        code = await asyncio.to_thread(cli.main, [
            "late-enrol", "--url", stub.base_url, "--key", "ftk_security", "--boarding-pass", boarding_pass,
            "--chip-photo", str(chip), *common, str(capture)])
    assert code == cli.EXIT_PROCEED and capsys.readouterr().out.startswith("ENROLLED")
    body = json.loads(stub.hits("/v1/enrolments")[0].body)
    assert body["boarding_pass"] == boarding_pass and "booking" not in body and body["chip_photo"]
    with pytest.raises(SystemExit):  # a late enrolment has no --flight: the pass names it
        cli.build_parser().parse_args(["late-enrol", "--flight", str(FLIGHT), *common, str(capture)])


async def test_gate_board_names_the_passenger_by_token_or_by_pass_once(capsys) -> None:
    boarding_pass = "M1CHAN/TAI MAN        EABC123 HKGLAXCX 0884 123Y042A0025 100"
    async with stub_service() as stub:
        stub.on("/v1/manual-boardings", Reply(201, {
            "id": 1, "token_id": str(FLIGHT), "flight_id": str(FLIGHT), "agent_id": "CX-4411",
            "reason_code": "device_fault", "boarded_at": "2026-01-01T00:00:00Z",
            "passenger": {"name": "CHAN, TAI MAN", "seat": "42A", "flight": "CX884"}}))
        base = ["gate-board", "--url", stub.base_url, "--key", "ftk_gate", "--agent", "CX-4411",
                "--reason", "device_fault"]
        code = await asyncio.to_thread(cli.main, [*base, "--boarding-pass", boarding_pass])
        both = await asyncio.to_thread(cli.main, [*base, "--boarding-pass", boarding_pass, str(FLIGHT)])
        neither = await asyncio.to_thread(cli.main, base)
    assert code == cli.EXIT_PROCEED and capsys.readouterr().out.startswith("BOARDED")
    assert (both, neither) == (cli.EXIT_USAGE, cli.EXIT_USAGE)
    (sent,) = stub.hits("/v1/manual-boardings")
    assert json.loads(sent.body) == {"agent_id": "CX-4411", "reason_code": "device_fault",
                                     "boarding_pass": boarding_pass}


def test_capabilities_find_routes_and_fill_their_parameters() -> None:
    from touchpoints.capabilities import Capabilities, fill_path

    caps = Capabilities.from_document({"paths": {
        "/v1/flights/{flight_id}/delay": {"post": {}}, "/v1/flights/{flight_id}/progress": {"get": {}},
        "/v1/devices": {"post": {}, "get": {}}, "/v1/opt-outs": {"post": {"requestBody": {"content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/OptOutRequest"}}}}}}},
        "components": {"schemas": {"OptOutRequest": {"properties": {"booking_reference": {}}}}}})
    assert caps.find("POST", r"/v1/flights/\{[^}]+\}/delay") == "/v1/flights/{flight_id}/delay"
    assert caps.find("GET", r"/v1/flights/\{[^}]+\}/delay") is None  # wrong method
    assert caps.find("POST", r"/v1/flights/\{[^}]+\}/gate") is None  # an older service
    assert caps.find("POST", r"/v1/devices/?") == "/v1/devices"
    assert "booking_reference" in caps.request_schema("POST", "/v1/opt-outs")["properties"]
    flight = uuid.uuid4()
    assert fill_path("/v1/flights/{flight_id}/delay", flight_id=flight) == f"/v1/flights/{flight}/delay"
    assert fill_path("/v1/flights/{id:uuid}/gate", flight_id=flight) == f"/v1/flights/{flight}/gate"
