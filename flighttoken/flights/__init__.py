"""Flights: schedule, state and departure windows."""
