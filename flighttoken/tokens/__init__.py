"""Passenger tokens: look-up, revocation, staff holds, and the one way a token ends (``ending.end_tokens``).

Admin, privacy (opt-out, purge), watchlist and journey call this package; its SQL is in
``flighttoken/db/queries/tokens.py``.
"""
