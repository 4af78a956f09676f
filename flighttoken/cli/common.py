"""What every command module shares: the exit status and one-line message of a refused command."""

from __future__ import annotations

import sys

EXIT_CONFIG = 2


def fail(message: str) -> int:
    print(f"flighttoken: {message}", file=sys.stderr)
    return EXIT_CONFIG
