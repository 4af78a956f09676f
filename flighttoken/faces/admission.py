"""A bounded queue in front of the face engine: shed load with 503 instead of queueing without end.

Every capture the service analyses holds a slot from the moment it is admitted until its analysis
ends (waiting for a worker thread counts). When ``FLIGHTTOKEN_ENGINE_QUEUE_MAX`` slots are taken, a
new capture is refused at once with ``503 engine_busy`` and ``Retry-After: 1``: nothing has been
read or written yet, so the client's retry is safe, and the captures already admitted keep a bounded
wait instead of every request slowing down together. The other instance behind the load balancer,
or the same one a second later, takes the retry.

The captures of one request (an enrolment's 1-5 live captures, analysed concurrently) share the
slot of their first capture: an enrolment is admitted or shed as a whole, never half analysed, and
one request always fits an idle engine. A request is recognised by the serial the request middleware
gives each HTTP request (outside one, by the structlog ``request_id``), never by the X-Request-Id a
client chooses, and lends its slot to at most ``PER_REQUEST_CAPTURES`` captures, so the queue stays
bounded whatever clients send.

Fairness: one device holds at most ``FLIGHTTOKEN_ENGINE_DEVICE_SHARE`` of the queue (at least one
slot), so a flooding key (a stuck camera, a stolen key sending decode bombs) gets ``engine_busy`` on
its own captures while every other device is still admitted. The device is the one the API-key
middleware bound to the same structlog context (``device_id``): no call site passes it. Work without
a device (the CLI, benchmarks) is limited by the queue alone.

Admitted is not yet running: each device also runs at most ``FLIGHTTOKEN_ENGINE_DEVICE_RUNNING``
captures at once (its others wait their turn, still holding their queue slots), so the worker threads
and cores go round the devices instead of to whoever sent most. Without it, a device holding its six
slots with valid 12 MP frames had four threads decoding for it, and another device's identify waited
behind them (p95 x14 in ``make bench-flood``).

Everything here runs on the event loop thread (``FaceEngine.analyse`` is a coroutine), so plain
counters suffice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from flighttoken.errors import Unavailable
from flighttoken.middleware import current_request

log = structlog.get_logger(__name__)
RETRY_AFTER_S = "1"
# Five live captures (the enrolment schema's maximum) plus the chip photo.
PER_REQUEST_CAPTURES = 6


class Admission:
    def __init__(self, limit: int, device_share: float = 1.0, device_running: int | None = None) -> None:
        if limit < 1:
            raise ValueError("the engine queue must hold at least one capture")
        if not 0.0 < device_share <= 1.0:
            raise ValueError("a device's share of the engine queue is within (0, 1]")
        self.limit = limit
        self.per_device = max(1, int(limit * device_share))
        """Most captures one device may have admitted at once."""
        self.running_per_device = device_running or limit
        """Most captures of one device analysed at once; the rest of its admitted ones wait."""
        self._turns: dict[str, list] = {}  # device -> [its semaphore, captures using it]
        self.in_flight = 0
        """Captures admitted and not yet finished (running or waiting for the engine)."""
        self.peak = 0
        self.admitted = 0
        self.shed = 0
        self.shed_device_share = 0
        """Of ``shed``: refused because their device held its share, while the queue had room."""
        self._by_request: dict[str, int] = {}
        self._by_device: dict[str, int] = {}

    def device_in_flight(self, device_id: str) -> int:
        return self._by_device.get(device_id, 0)

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a slot for one capture's analysis, or raise ``Unavailable`` (engine_busy) at once."""
        context = structlog.contextvars.get_contextvars()
        device = context.get("device_id")
        serial = current_request.get()
        key = f"http:{serial}" if serial else context.get("request_id")
        held = self._by_request.get(key, 0) if key else 0
        device_held = self._by_device.get(device, 0) if device else 0
        # A request already admitted finishes its captures: it was admitted as a whole.
        continuing = 0 < held < PER_REQUEST_CAPTURES
        queue_full = self.in_flight >= self.limit
        if not continuing and (queue_full or device_held >= self.per_device):
            self.shed += 1
            if not queue_full:
                self.shed_device_share += 1
            log.info("engine_busy", in_flight=self.in_flight, limit=self.limit, device_in_flight=device_held,
                     per_device=self.per_device)
            raise Unavailable("the face engine is at capacity; retry shortly", code="engine_busy",
                              headers={"Retry-After": RETRY_AFTER_S})
        self.in_flight += 1
        self.admitted += 1
        self.peak = max(self.peak, self.in_flight)
        if key:
            self._by_request[key] = held + 1
        if device:
            self._by_device[device] = device_held + 1
        try:
            yield
        finally:
            self.in_flight -= 1
            _release(self._by_request, key)
            _release(self._by_device, device)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait, once admitted, until the capture's device has fewer than its running share at work."""
        device = structlog.contextvars.get_contextvars().get("device_id")
        if not device:
            yield
            return
        entry = self._turns.get(device)
        if entry is None:
            entry = self._turns[device] = [asyncio.Semaphore(self.running_per_device), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if not entry[1]:
                del self._turns[device]


def _release(counts: dict[str, int], key: str | None) -> None:
    if key:
        left = counts.pop(key) - 1
        if left:
            counts[key] = left


def collect(engine: Any) -> Iterator[Metric]:
    """The admission gauges and shed counter for /metrics (nothing for an engine without one)."""
    admission: Admission | None = getattr(engine, "admission", None)
    if admission is None:
        return
    queue = GaugeMetricFamily("flighttoken_engine_queue",
                              "Captures admitted to the face engine and not finished (running or waiting).")
    queue.add_metric([], admission.in_flight)
    limit = GaugeMetricFamily("flighttoken_engine_queue_max",
                              "Most captures the engine admits at once (FLIGHTTOKEN_ENGINE_QUEUE_MAX).")
    limit.add_metric([], admission.limit)
    peak = GaugeMetricFamily("flighttoken_engine_queue_peak", "Highest number of captures admitted at once.")
    peak.add_metric([], admission.peak)
    shed = CounterMetricFamily("flighttoken_engine_shed",
                               "Captures refused with 503 engine_busy because the engine queue was full.")
    shed.add_metric([], admission.shed)
    share = CounterMetricFamily("flighttoken_engine_shed_device_share",
                                "Of the shed captures: refused because their device held its share of the queue "
                                "(FLIGHTTOKEN_ENGINE_DEVICE_SHARE) while others were admitted.")
    share.add_metric([], admission.shed_device_share)
    yield from (queue, limit, peak, shed, share)
