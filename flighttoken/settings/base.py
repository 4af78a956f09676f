"""What every settings section shares: the error, the environment naming rule, and range types.

Ranges are ``msgspec.Meta`` constraints, so msgspec checks them while it converts the environment,
and its message (naming the field) becomes one line naming the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

ENV_PREFIX = "FLIGHTTOKEN_"
CHECKOUT_ROOT = Path(__file__).resolve().parent.parent.parent


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable to fix."""


def env_name(field: str) -> str:
    """The environment variable of a (flat) setting name: ``FLIGHTTOKEN_<FIELD>``, or DATABASE_URL."""
    return "DATABASE_URL" if field == "database_url" else ENV_PREFIX + field.upper()


class Section(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One group of settings; its field names are the flat setting names (FLIGHTTOKEN_<FIELD>).

    Subclasses say ``frozen=True`` again: msgspec inherits it, but type checkers want it spelled out."""


AtLeastOne = Annotated[int, msgspec.Meta(ge=1)]
NotNegative = Annotated[int, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(gt=0.0)]
Share = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
"""A share of passengers or searches, 0-1."""
OpenShare = Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)]
"""A share of searches strictly within (0, 1)."""
UnitScore = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
"""A detector score or ratio in (0, 1]."""
Cosine = Annotated[float, msgspec.Meta(gt=-1.0, lt=1.0)]
"""A cosine similarity between two templates, within (-1, 1)."""
TcpPort = Annotated[int, msgspec.Meta(ge=1, le=65535)]
PostgresUrl = Annotated[str, msgspec.Meta(pattern=r"^(postgres(ql)?://.*)?$")]
"""Empty, or a PostgreSQL DSN (postgresql://user@host:5432/db)."""
GreyLevel = Annotated[float, msgspec.Meta(ge=0.0, le=255.0)]
