"""Device clients for FlightToken (kiosk, e-channel, lounge, gate) and the airport-day simulator.

Integrators need only :mod:`touchpoints.clients` and :mod:`touchpoints.models` (httpx + msgspec);
the simulator also uses the service package to measure raw model throughput.
"""
