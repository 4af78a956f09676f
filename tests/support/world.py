"""The traveller and the world a test module sets up: one shape for every module's fixtures.

A module's ``world`` fixture starts the service (``make_service``), enrols its passengers and yields
a :class:`World`; modules that need more (a second instance, a watchlist subject...) subclass it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flighttoken.testing import RunningService
from tests.support.journey import make_devices


@dataclass(kw_only=True)
class Passenger:
    """One traveller: the photo they enrol with, another they are seen with, their document and token."""

    name: str = ""
    enrol_photo: Path | None = None
    probe: Path | None = None
    """Another photo of the same person, as a touchpoint sees them (None: the enrolment photo again)."""
    document: str = ""
    token_id: str = ""
    """Set once enrolled ("" before, or when the enrolment was refused)."""
    flight: str = ""
    """The flight's id or a module's name for it."""
    booking_reference: str = ""
    ended: bool = False
    """Opted out, revoked or purged."""

    @property
    def photo(self) -> Path:
        """The enrolment photo; only a passenger made with one may ask for it."""
        assert self.enrol_photo is not None, "this passenger was made without an enrolment photo"
        return self.enrol_photo

    @property
    def seen_photo(self) -> Path:
        """What a touchpoint sees: the probe, or the enrolment photo again."""
        return self.probe or self.photo


@dataclass(kw_only=True)
class World:
    """The running service, its device keys, the module's flights (by the module's names) and passengers."""

    svc: Any
    keys: dict[str, str] = field(default_factory=dict)
    flights: dict[str, dict[str, Any]] = field(default_factory=dict)
    passengers: list[Passenger] = field(default_factory=list)


@asynccontextmanager
async def two_instances(make_service: Any) -> AsyncIterator[tuple[RunningService, RunningService, dict[str, str]]]:
    """Two instances of one database, the second already listening for the first's sync events, and
    the keys of the demo devices (``tests/support/journey.make_devices``)."""
    settings = make_service.settings()
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(make_service(settings))
        b = await stack.enter_async_context(make_service(settings))
        assert b.services.sync is not None
        await asyncio.wait_for(b.services.sync.connected.wait(), 5)
        yield a, b, await make_devices(a.services.db())
