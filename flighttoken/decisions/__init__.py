"""Match decisions shared by the journey, the galleries and the watchlist: the touchpoint policy
table (policy.py) and the score thresholds and match verdict (match.py). Below journey and
galleries: imports only the vocabulary and the settings."""
