"""The airport-day simulator: a realistic day of kiosks, e-channels, lounges and gates on real faces.

scenario (the plan) → runner (sends it through the device clients) → report (figures, invariants)
and chart (PNG). Entry point: ``python -m touchpoints simulate`` (simulator/command.py).
"""
