"""Gated interception: the authority's watchlist, screened at touchpoints without the touchpoint learning it.

Only ``authority`` keys reach the watchlist and its alerts. A screened passenger who hits a subject
is referred to an officer exactly as a random share of passengers are (random secondary referral,
the cover); the alert's kind and the audit trail are the authority's alone. See ``screening`` for
what a touchpoint, an airline and an admin can and cannot observe.
"""
