"""IATA Bar Coded Boarding Passes (Resolution 792): a pure parser, nothing else (no I/O, no database)."""
