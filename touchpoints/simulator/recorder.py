"""Everything the simulator observed: one record per request, a load timeline, flight events."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

IDENTIFY_TOUCHPOINTS = ("bag_drop", "e_security_gate", "e_channel", "lounge", "gate")
# Purposes whose correct answer is "proceed"; every other identify purpose must be refused.
EXPECT_PROCEED = frozenset({"journey", "retry"})
# Identify purposes that board or clear a passenger (face-only, or the boarding-pass 1:1 fallback).
BOARDING_PURPOSES = EXPECT_PROCEED | {"fallback"}


@dataclass(slots=True)
class Obs:
    touchpoint: str
    """kiosk, bag_drop, e_security_gate, e_channel, lounge or gate."""
    purpose: str
    """enrol, retake, kiosk_repeat, late_enrol | journey, retry, fallback (boarding pass + 1:1), manual
    (gate agent), pass_impostor (someone else's pass), lounge_first, wrong_gate, stale_gate, double_board,
    opted_out, watchlist, stranger, purge_probe."""
    who: str
    """p<index> for a passenger, s<index> for a non-enrolled person."""
    flight: int
    queued: float
    sent: float
    done: float
    status: int
    """HTTP status of the final answer; 0 when none came."""
    outcome: str
    """proceed / refer (identify), created / existing (enrol), else the error code."""
    reason: str = ""
    own_token: bool | None = None
    """On a proceed (or an enrolment repeat): whether the token is the passenger's own."""
    method: str = ""
    """On a decision: ``face`` or ``boarding_pass`` (the 1:1 fallback)."""

    @property
    def latency_ms(self) -> float:
        return (self.done - self.sent) * 1000

    @property
    def wait_ms(self) -> float:
        return (self.sent - self.queued) * 1000


@dataclass
class Recorder:
    t0: float = field(default_factory=time.perf_counter)
    obs: list[Obs] = field(default_factory=list)
    inflight: dict[str, int] = field(default_factory=lambda: {"identify": 0, "enrol": 0})
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    """(t, identify requests in flight, enrolments in flight), every ``sample_s``."""
    events: list[tuple[float, int, str]] = field(default_factory=list)
    """(t, flight, what): boarding, gate change, delay, closed, departed, purged."""
    retries: dict[str, int] = field(default_factory=dict)
    cpu: list[tuple[float, float]] = field(default_factory=list)
    """(t, the service process's CPU seconds so far), from its /metrics, every ``cpu_every_s``."""
    client_cpu: list[tuple[float, float]] = field(default_factory=list)
    """(t, this simulator process's CPU seconds so far), sampled with ``cpu``: the touchpoints' own
    share of the cores they share with the service here (they are other machines at an airport)."""
    open: asyncio.Event = field(default_factory=asyncio.Event)
    """Cleared while the day is paused (:meth:`paused`): no touchpoint sends a request then."""
    pauses: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) of every pause, on the day's clock."""
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while no request is in flight."""

    def __post_init__(self) -> None:
        self.open.set()
        self.idle.set()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    @contextlib.contextmanager
    def in_flight(self, what: str) -> Iterator[None]:
        self.inflight[what] += 1
        self.idle.clear()
        try:
            yield
        finally:
            self.inflight[what] -= 1
            if not any(self.inflight.values()):
                self.idle.set()

    async def wait_open(self) -> None:
        """Every touchpoint request waits here before it is sent."""
        if not self.open.is_set():
            await self.open.wait()

    @contextlib.asynccontextmanager
    async def paused(self, drain_timeout_s: float = 60.0) -> AsyncIterator[None]:
        """Hold every new request and wait (up to ``drain_timeout_s``) for those in flight to
        finish, so that the service idles inside the block (the raw model measurements through the
        final wave; one taken while the service was still busy says so and is not used)."""
        t_start = self.now()
        self.open.clear()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), drain_timeout_s)
            yield
        finally:
            self.open.set()
            self.pauses.append((t_start, self.now()))

    def event(self, flight: int, what: str) -> None:
        self.events.append((self.now(), flight, what))

    async def sample_cpu(self, read: Callable[[], Awaitable[float | None]], every_s: float = 5.0) -> None:
        """Run until cancelled: the service's CPU time, to price an identify in CPU."""
        while True:
            t = self.now()
            value = await read()
            if value is not None:
                self.cpu.append((t, value))
                self.client_cpu.append((t, time.process_time()))
            await asyncio.sleep(every_s)

    async def sample(self, every_s: float = 0.1) -> None:
        """Run until cancelled: the load the service was under, for the saturation analysis."""
        while True:
            self.samples.append((self.now(), self.inflight["identify"], self.inflight["enrol"]))
            await asyncio.sleep(every_s)


def boards(o: Obs) -> bool:
    """Whether this observation boarded a passenger: a gate's proceed (face-only or 1:1) or an
    agent's manual boarding."""
    return o.touchpoint == "gate" and ((o.purpose in BOARDING_PURPOSES and o.outcome == "proceed")
                                       or (o.purpose == "manual" and o.outcome == "boarded"))


def is_enrolment(o: Obs) -> bool:
    """A kiosk enrolment, or a late one at an e-Security Gate."""
    return o.touchpoint == "kiosk" or o.purpose == "late_enrol"


def is_identify(o: Obs) -> bool:
    """A face decision at a touchpoint (not an enrolment, not an agent's manual boarding)."""
    return o.touchpoint in IDENTIFY_TOUCHPOINTS and o.purpose not in ("late_enrol", "manual")
