"""The passenger journey: enrolment at check-in, then face-only decisions at touchpoints."""
