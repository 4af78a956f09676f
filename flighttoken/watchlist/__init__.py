"""Gated interception: the authority's watchlist, screened at touchpoints without the touchpoint learning it.

Only ``authority`` keys reach the watchlist and its alerts. Screened captures that hit a subject get
the same ``refer`` a poor capture gets; the alert, the token hold and the audit trail are the
authority's alone. See ``screening`` for what a touchpoint can and cannot observe.
"""
