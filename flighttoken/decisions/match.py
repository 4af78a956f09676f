"""The match decision, as pure functions.

A doubtful match never opens a gate: ``decide_match`` proceeds only when the best score reaches
the touchpoint's threshold AND beats the runner-up by the margin. The threshold grows with the
gallery searched (``threshold_for``): the best of N impostor scores rises with N, so one threshold
cannot suit a 420-face flight and a 42,000-face departure window.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from flighttoken.decisions.policy import TOUCHPOINTS
from flighttoken.settings import Settings
from flighttoken.vocabulary import DecisionReason, DeviceKind


class Scored(Protocol):
    """A search hit (galleries/index.py ``Candidate``): a token id and its similarity."""

    @property
    def id(self) -> str: ...
    @property
    def score(self) -> float: ...


@dataclass(frozen=True, slots=True)
class MatchOutcome:
    token_id: uuid.UUID | None
    reason: DecisionReason
    score: float | None
    margin: float | None


def impostor_rate(score: float, score_1e6: float, decade: float) -> float:
    """Per-comparison impostor tail p(t): the share of different-person pairs scoring >= ``score``."""
    return 10.0 ** min(0.0, -6.0 - (score - score_1e6) / decade)  # a share: at most 1


def predicted_fpir(score: float, gallery_size: int, score_1e6: float, decade: float) -> float:
    """FPIR of a ``gallery_size``-face search at threshold ``score``: 1 - (1 - p)^N (independent pairs)."""
    p = impostor_rate(score, score_1e6, decade)
    return -math.expm1(max(gallery_size, 1) * math.log1p(-p)) if p < 1.0 else 1.0


def size_threshold(gallery_size: int, target_fpir: float, score_1e6: float, decade: float) -> float:
    """Lowest score whose predicted FPIR in a ``gallery_size``-face search is ``target_fpir``."""
    p = -math.expm1(math.log1p(-target_fpir) / max(gallery_size, 1))  # per-comparison budget
    return score_1e6 - decade * (6.0 + math.log10(p))


def threshold_for(settings: Settings, touchpoint: DeviceKind, gallery_size: int) -> float:
    """The score to proceed at ``touchpoint`` after searching ``gallery_size`` faces: the gallery-size
    threshold for the touchpoint's target FPIR, never below the touchpoint's configured threshold."""
    d, policy = settings.decisions, TOUCHPOINTS[touchpoint]
    floor, fpir = policy.threshold(settings), policy.target_fpir(settings)
    return max(floor, size_threshold(gallery_size, fpir, d.impostor_tail_score_1e6, d.impostor_tail_decade))


MISUSE_FPIR_SHARE = 0.1
"""The misuse search's target FPIR, as a share of the touchpoint's. That search runs only after the
purpose search refused, over everyone live (a window's or more), and what it finds is written to the
audit log against a named token (``already_cleared``, ``wrong_flight``...). A stranger wrongly found
there is an accusation against an innocent traveller, so it is held to a tenth of the rate the
touchpoint accepts for letting one through; missing a weak misuse match costs nothing, since the
answer is refer either way."""


def misuse_threshold_for(settings: Settings, touchpoint: DeviceKind, gallery_size: int) -> float:
    """The score for the audit-only misuse search of ``gallery_size`` faces: ``threshold_for`` at
    ``MISUSE_FPIR_SHARE`` of the target FPIR (never below the touchpoint's floor)."""
    d, policy = settings.decisions, TOUCHPOINTS[touchpoint]
    fpir = policy.target_fpir(settings) * MISUSE_FPIR_SHARE
    return max(policy.threshold(settings),
               size_threshold(gallery_size, fpir, d.impostor_tail_score_1e6, d.impostor_tail_decade))


def decide_match(candidates: Sequence[Scored], threshold: float, margin: float) -> MatchOutcome:
    if not candidates:
        return MatchOutcome(None, DecisionReason.NO_MATCH, None, None)
    top = candidates[0]
    gap = top.score - candidates[1].score if len(candidates) > 1 else None
    if top.score < threshold:
        return MatchOutcome(None, DecisionReason.NO_MATCH, top.score, gap)
    if gap is not None and gap < margin:
        return MatchOutcome(None, DecisionReason.AMBIGUOUS_MATCH, top.score, gap)
    return MatchOutcome(uuid.UUID(top.id), DecisionReason.MATCHED, top.score, gap)
