"""The match decision and its gallery-size threshold (issue 8), as pure functions."""

from __future__ import annotations

import uuid

import pytest

from flighttoken.decisions.match import decide_match, predicted_fpir, size_threshold, threshold_for
from flighttoken.devices.model import DeviceKind
from flighttoken.galleries.index import Candidate
from flighttoken.settings import SettingsError, load_settings

SETTINGS = load_settings({})
TOUCHPOINTS = (DeviceKind.GATE, DeviceKind.E_CHANNEL, DeviceKind.LOUNGE)


def candidates(*scores: float) -> list[Candidate]:
    return [Candidate(str(uuid.uuid4()), s) for s in scores]


def test_a_match_needs_the_threshold_and_the_margin() -> None:
    assert decide_match([], 0.4, 0.08).reason == "no_match"
    assert decide_match(candidates(0.39, 0.1), 0.4, 0.08).reason == "no_match"
    assert decide_match(candidates(0.60, 0.55), 0.4, 0.08).reason == "ambiguous_match"
    top = candidates(0.60, 0.30)
    outcome = decide_match(top, 0.4, 0.08)
    assert (outcome.reason, str(outcome.token_id)) == ("matched", top[0].id)
    assert outcome.margin == pytest.approx(0.30)
    assert decide_match(candidates(0.41), 0.4, 0.08).reason == "matched"  # a one-face gallery has no runner-up


@pytest.mark.parametrize("n", [1, 420, 3000, 42_000, 1_000_000])
@pytest.mark.parametrize("fpir", [0.0003, 0.001, 0.003])
def test_the_size_threshold_meets_its_target_fpir_exactly(n: int, fpir: float) -> None:
    t = size_threshold(n, fpir, 0.397, 0.056)
    assert predicted_fpir(t, n, 0.397, 0.056) == pytest.approx(fpir, rel=1e-9)
    assert predicted_fpir(t - 0.01, n, 0.397, 0.056) > fpir


def test_the_size_threshold_rises_with_the_gallery_and_falls_with_the_fpir_allowed() -> None:
    sizes = [1, 10, 420, 1000, 3000, 42_000, 500_000]
    ts = [size_threshold(n, 0.003, 0.397, 0.056) for n in sizes]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    # Ten times the faces costs one decade of the tail (while FPIR is small, FPIR ≈ N·p).
    assert size_threshold(42_000, 0.003, 0.397, 0.056) - size_threshold(4_200, 0.003, 0.397, 0.056) == \
        pytest.approx(0.056, abs=1e-4)
    assert size_threshold(3000, 0.001, 0.397, 0.056) > size_threshold(3000, 0.003, 0.397, 0.056)


def test_the_touchpoint_threshold_is_a_floor_for_small_galleries() -> None:
    d = SETTINGS.decisions
    for kind in TOUCHPOINTS:
        assert threshold_for(SETTINGS, kind, 0) == pytest.approx(d.gate_threshold)
        # A 1:N decision is never looser than the 1:1 one (FMR <= 1e-4), whatever the gallery.
        assert threshold_for(SETTINGS, kind, 1) >= d.verify_threshold
        # At one flight's size the tail, not the floor, sets the gate's threshold.
    assert threshold_for(SETTINGS, DeviceKind.GATE, 420) > d.gate_threshold
    raised = load_settings({}, gate_threshold=0.5)
    assert threshold_for(raised, DeviceKind.GATE, 42_000) == pytest.approx(0.5)


def test_large_galleries_get_a_higher_threshold_and_the_e_channel_the_highest() -> None:
    gate, e_channel, lounge = (threshold_for(SETTINGS, k, 42_000) for k in TOUCHPOINTS)
    assert gate == lounge > 0.45
    assert e_channel > gate
    for kind in TOUCHPOINTS:
        ts = [threshold_for(SETTINGS, kind, n) for n in (420, 3000, 10_000, 42_000)]
        assert ts == sorted(ts) and ts[-1] > ts[0]


def test_issue_8_a_stranger_at_0_407_against_a_few_thousand_faces_is_referred() -> None:
    stranger = candidates(0.407, 0.30)
    # Before: one threshold (0.40) for every gallery accepted this non-enrolled traveller.
    d = SETTINGS.decisions
    assert decide_match(stranger, d.e_channel_threshold, d.decision_margin).reason == "matched"
    for n in (3000, 4000, 42_000):
        t = threshold_for(SETTINGS, DeviceKind.E_CHANNEL, n)
        assert decide_match(stranger, t, SETTINGS.decisions.decision_margin).reason == "no_match", (n, t)
    # The same score still proceeds at a 420-face flight gallery, where it is no longer in the tail.
    t420 = threshold_for(SETTINGS, DeviceKind.E_CHANNEL, 420)
    assert decide_match(stranger, t420, SETTINGS.decisions.decision_margin).reason == "matched"


def test_the_tail_model_follows_its_settings() -> None:
    steeper = load_settings({"FLIGHTTOKEN_IMPOSTOR_TAIL_DECADE": "0.03"})
    assert threshold_for(steeper, DeviceKind.E_CHANNEL, 42_000) < threshold_for(SETTINGS, DeviceKind.E_CHANNEL, 42_000)
    looser = load_settings({"FLIGHTTOKEN_E_CHANNEL_TARGET_FPIR": "0.01"})
    assert threshold_for(looser, DeviceKind.E_CHANNEL, 42_000) < threshold_for(SETTINGS, DeviceKind.E_CHANNEL, 42_000)


@pytest.mark.parametrize("env", [
    {"FLIGHTTOKEN_GATE_TARGET_FPIR": "0"}, {"FLIGHTTOKEN_E_CHANNEL_TARGET_FPIR": "1"},
    {"FLIGHTTOKEN_LOUNGE_TARGET_FPIR": "-0.1"}, {"FLIGHTTOKEN_IMPOSTOR_TAIL_DECADE": "0"},
    {"FLIGHTTOKEN_IMPOSTOR_TAIL_SCORE_1E6": "1.5"},
])
def test_bad_tail_settings_stop_start_up_naming_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        load_settings(env)


def test_the_tail_model_stays_a_share_far_below_the_fit() -> None:
    # No overflow: every comparison is an impostor hit.
    assert predicted_fpir(-1.0, 10, 0.397, 0.001) == pytest.approx(1.0)
    assert predicted_fpir(0.999, 42_000, 0.397, 0.056) < 1e-6
