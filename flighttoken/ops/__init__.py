"""Airline operations dashboard: the static page at /ops and its JSON summary."""
