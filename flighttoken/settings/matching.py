"""Settings sections of matching: decision thresholds, the galleries searched, and the watchlist.
Measured figures behind the defaults are in ``ops/results/``."""

from __future__ import annotations

from flighttoken.settings.base import (
    AtLeastOne,
    Cosine,
    NotNegative,
    OpenShare,
    Seconds,
    Section,
    Share,
)


class DecisionSettings(Section, frozen=True):
    """When a capture proceeds, is referred, or is refused as a duplicate (flighttoken/decisions/match.py).

    Decision threshold by gallery size (issue 8): FPIR grows with the number of faces searched (the best
    of N impostor scores), so the threshold is t(N) = the lowest score keeping 1 - (1 - p(t))^N <= the
    touchpoint's target FPIR, with the per-comparison impostor tail
    p(t) = 10^(-6 - (t - impostor_tail_score_1e6) / impostor_tail_decade). The tail is an upper
    confidence bound, not a point fit: ``make bench-accuracy`` fits it on identity-disjoint folds of
    lfw-train, bootstraps identities and takes the 95th percentile, and checks the thresholds it gives
    on the held-out folds (ops/results/accuracy-lfw.md). The touchpoint thresholds stay floors under t(N).
    """

    gate_threshold: Cosine = 0.35
    e_channel_threshold: Cosine = 0.35
    lounge_threshold: Cosine = 0.35
    """Lowest top score to proceed at each touchpoint (cosine similarity): a floor under the
    gallery-size threshold. It is the 1:1 threshold (``verify_threshold``, FMR <= 1e-4): a search of
    one face is a 1:1 decision, and no 1:N decision should be looser. From a few hundred faces up the
    gallery-size threshold is higher and sets the decision (0.40 before issue 19 raised the match
    FNIR at one flight's size from 1.9 % to 4.1 % on held-out folds, for no FPIR the target needed)."""
    bag_drop_threshold: Cosine = 0.35
    e_security_gate_threshold: Cosine = 0.35
    """The bag drop's and the e-Security Gate's floors: the gate's, already at the 1:1 threshold."""
    impostor_tail_score_1e6: Cosine = 0.398
    """Score that one impostor comparison in a million reaches (bound on LFW, flip-averaged w600k_mbf)."""
    impostor_tail_decade: OpenShare = 0.055
    """Score rise that makes an impostor comparison ten times rarer (tail slope), within (0, 1)."""
    gate_target_fpir: OpenShare = 0.003
    """Share of non-enrolled people a gate may accept (NIST FRVT's paperless-travel point)."""
    e_channel_target_fpir: OpenShare = 0.001
    """Stricter at immigration: a doubtful match never opens the doors, the traveller sees an officer."""
    lounge_target_fpir: OpenShare = 0.003
    bag_drop_target_fpir: OpenShare = 0.003
    """A bag drop moves no one on: the gate's rate (a wrong accept tags a bag to the wrong booking)."""
    e_security_gate_target_fpir: OpenShare = 0.003
    """Airside entry; the e-channel and the gate still identify the passenger after it: the gate's rate."""
    decision_margin: float = 0.08
    """The best candidate must beat the second best by this much, or the passenger is referred."""
    duplicate_threshold: float = 0.45
    """At enrolment, a face this close to a token of another document in the window is refused."""
    verify_threshold: Cosine = 0.35
    """Every 1:1 decision (cosine similarity): the live face vs. the document chip photo at enrolment,
    and at re-enrolment the live face (and any chip photo) vs. the enrolled template. Set for
    FMR <= 1e-4 with a margin over the value ``make bench-verification`` fits on half of LFW's
    identities (ops/results/verification.md). One setting for both decisions: the same models answer
    the same question, so one threshold means one false-match rate, and a false match costs the same
    in both (someone travels as another person)."""


class GallerySettings(Section, frozen=True):
    """Which faces a touchpoint searches, and how (flighttoken/galleries; ``make bench-galleries``)."""

    window_seconds: int = 7200
    """Departure window size: flights whose departures share a bucket share one e-channel gallery."""
    clearance_horizon_s: int = 4 * 3600
    """E-channels and lounges serve passengers whose flight departs within this many seconds."""
    reconcile_interval_s: float = 30.0
    """How often each instance checks its galleries against PostgreSQL (repairs missed notifications)."""
    gallery_exact_max: NotNegative = 1024
    """Galleries up to this many faces (a flight) are searched exhaustively, without a graph."""
    gallery_graph_dim: AtLeastOne = 96
    """Larger galleries build their hnswlib graph on the top principal directions of the faces."""
    gallery_shard_size: AtLeastOne = 65536
    """Most faces in one hnswlib graph; a larger window is several graphs, all searched."""
    gallery_m: AtLeastOne = 12
    gallery_ef_construction: AtLeastOne = 32
    """hnswlib build parameters (links per node, build breadth): rebuild time vs. graph quality."""
    gallery_ef: AtLeastOne = 128
    """hnswlib search breadth: latency vs. how often a weak result needs the exhaustive re-check."""
    gallery_rerank_k: AtLeastOne = 32
    """Candidates the graph proposes for exact re-scoring."""
    gallery_verify_margin: Share = 0.05
    """A graph result whose best score is below the highest touchpoint threshold (at the largest
    clearance group, 100,000 faces) plus this, or below duplicate_threshold, is re-checked by
    exhaustive search: near any threshold in use the graph never decides alone (galleries/index.py)."""
    gallery_build_threads: NotNegative = 0
    """Threads for a start-up rebuild; 0 means every core."""


WATCHLIST_TOUCHPOINT_KINDS = ("kiosk", "bag_drop", "e_security_gate", "e_channel", "lounge", "gate")


class WatchlistSettings(Section, frozen=True):
    """Screening against the authority's watchlist (flighttoken/watchlist; authority keys only)."""

    watchlist_threshold: Cosine = 0.322
    """Cosine similarity at or above which a capture raises a watchlist alert: the tail bound's
    threshold for a 1 % alarm budget on a 420-person list (``make bench-accuracy``), lower than the
    passengers' thresholds, accepting more alarms (an officer reviews each one)."""
    watchlist_touchpoints: str = "e_channel"
    """Comma list of device kinds whose captures are screened: e_channel, lounge, gate, kiosk, bag_drop,
    e_security_gate (its late enrolments too)."""
    secondary_referral_share: Share = 0.01
    """Share of passengers who would proceed at a screened touchpoint (or enrol at a screened kiosk)
    who are referred to an officer and held at random, drawn with a CSPRNG: the cover that makes a
    watchlist hit look like any other referral (issue 17). 0 turns the cover off, so only a hit
    sends someone to an officer: set it only on purpose (start-up then warns)."""
    watchlist_max_days: AtLeastOne = 366
    """Longest time ahead an authority may set a subject's expiry."""
    watchlist_sweep_s: Seconds = 60.0
    """How often expired subjects' templates are deleted (they never match once expired, sweep or not)."""
    alert_stream_max_s: Seconds = 60.0
    """An alert stream ends after this long; the console reconnects with Last-Event-ID and misses nothing."""
    alert_stream_heartbeat_s: Seconds = 15.0
    """Keep-alive comment interval on an idle alert stream (proxies drop silent connections)."""

