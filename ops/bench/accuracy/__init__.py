"""Open-set 1:N accuracy on LFW (``make bench-accuracy``), in the style of NIST FRVT Part 7 (NISTIR 8381).

The headline is the service's own accuracy (issue 19): through the face engine's quality gates at
enrolment and at capture, the touchpoints' floors, the size-aware threshold and ``decide_match``'s
runner-up margin, at N = 420 and N ~ 4,000, on identity-disjoint held-out folds, with the impostor
tail fitted without the fold (upper confidence bound). Modules:

* ``features``: one cached pass of the service's engine over lfw-train;
* ``cohort``: enrolments, identity folds, per-probe gallery draws, impostor pairs;
* ``calibrate``: the tail per fold (point and bound), predicted vs observed FPIR, the watchlist threshold;
* ``service``: FTE, FTA, match FNIR, FPIR and wrong-person accepts per touchpoint, accepts by name;
* ``model_level`` (+ ``protocol``, ``variants``, ``sizes``, ``tta``): FNIR at FPIR 0.003 as a second
  line, and with ``--details`` the older side studies.
"""
