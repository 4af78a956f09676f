"""One vocabulary: the refer reasons, states and touchpoint kinds the OpenAPI document lists are
exactly those the ops dashboard, the device clients (``touchpoints/``) and the README use, and every
touchpoint kind of the policy table has a journey rule."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from flighttoken.app import create_app
from flighttoken.decisions.policy import TOUCHPOINTS
from flighttoken.faces import quality
from flighttoken.journey.rules import JOURNEY_RULES
from flighttoken.settings import load_settings
from flighttoken.vocabulary import CAPTURE_REASONS, MATCHING_REASONS, DecisionReason, ManualBoardingReason
from touchpoints import clients, models
from touchpoints.simulator.recorder import IDENTIFY_TOUCHPOINTS

ROOT = Path(__file__).resolve().parents[2]
APP_JS = ROOT / "flighttoken" / "ops" / "static" / "app.js"


@pytest.fixture(scope="module")
def schemas() -> dict:
    app = create_app(load_settings({}))
    return app.openapi_schema.to_schema()["components"]["schemas"]


@pytest.fixture(scope="module")
def refer_reasons(schemas) -> set[str]:
    """Every reason the document lists for a decision, but ``matched`` (the one that proceeds)."""
    decision = schemas["Decision"]["properties"]["reason"]["$ref"].rsplit("/", 1)[-1]
    reasons = set(schemas[decision]["enum"])
    assert DecisionReason.MATCHED in reasons
    return reasons - {DecisionReason.MATCHED}


def _js_object_keys(name: str) -> set[str]:
    body = re.search(rf"const {name} = \{{(.*?)\}};", APP_JS.read_text(), re.S)
    assert body is not None, f"{name} not found in app.js"
    return set(re.findall(r"(\w+)\s*:", body.group(1)))


def test_the_document_lists_every_reason_state_and_kind(schemas, refer_reasons) -> None:
    assert refer_reasons >= {"state_changed", "not_a_touchpoint", "see_officer"}
    assert schemas["TokenView"]["properties"]["state"]["$ref"].endswith("/TokenState")
    assert set(schemas["TokenState"]["enum"]) == {"enrolled", "immigration_cleared", "boarded", "revoked",
                                                  "expired"}
    assert set(schemas["FlightState"]["enum"]) == {"scheduled", "boarding", "closed", "departed", "cancelled"}
    assert set(TOUCHPOINTS) <= set(schemas["DeviceKind"]["enum"])


def test_the_ops_dashboard_words_every_refer_reason_and_touchpoint(refer_reasons) -> None:
    assert _js_object_keys("REASON_WORDS") == refer_reasons
    assert _js_object_keys("TOUCHPOINT_WORDS") == set(TOUCHPOINTS)


def test_the_device_clients_know_every_refer_reason_and_touchpoint(refer_reasons) -> None:
    assert refer_reasons == models.REFER_REASONS
    assert models.CAPTURE_REASONS == CAPTURE_REASONS and models.MATCHING_REASONS == MATCHING_REASONS
    identify_kinds = {c.kind for c in vars(clients).values() if isinstance(c, type)
                      and issubclass(c, clients.IdentifyClient) and c is not clients.IdentifyClient}
    assert identify_kinds == set(IDENTIFY_TOUCHPOINTS) == set(TOUCHPOINTS)


def test_the_readme_lists_every_refer_reason(refer_reasons) -> None:
    text = (ROOT / "README.md").read_text()
    paragraph = re.search(r"Refer reasons a touchpoint can show:(.*?)\)\.", text, re.S)
    assert paragraph is not None
    assert set(re.findall(r"`(\w+)`", paragraph.group(1))) == refer_reasons


def test_every_quality_failure_is_a_capture_reason() -> None:
    """Every reason the quality gates give (faces/quality.py names each as ``R.<NAME>``, R being
    DecisionReason) is a capture reason."""
    tree = ast.parse(Path(quality.__file__).read_text())
    codes = {DecisionReason[n.attr] for n in ast.walk(tree)
             if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "R"}
    assert len(codes) == 7 and codes <= CAPTURE_REASONS


def test_every_touchpoint_kind_has_its_journey_rule() -> None:
    assert set(JOURNEY_RULES) == set(TOUCHPOINTS)


def test_manual_boarding_reasons_are_one_vocabulary(schemas) -> None:
    """The manual boarding reason codes (POST /v1/manual-boardings) the OpenAPI document lists are
    exactly the ones the dashboard words, the device clients offer and the README lists."""
    name = schemas["ManualBoardingRequest"]["properties"]["reason_code"]["$ref"].rsplit("/", 1)[-1]
    reasons = set(schemas[name]["enum"])
    assert reasons == set(ManualBoardingReason) and "face_not_recognised" in reasons
    assert _js_object_keys("MANUAL_BOARDING_WORDS") == reasons
    assert reasons == models.MANUAL_BOARDING_REASONS
    paragraph = re.search(r"Manual boarding reason codes:(.*?)\(", (ROOT / "README.md").read_text(), re.S)
    assert paragraph is not None
    assert set(re.findall(r"`(\w+)`", paragraph.group(1))) == reasons
