"""A bounded queue in front of the face engine: shed load with 503 instead of queueing without end.

Every capture the service analyses holds a slot from the moment it is admitted until its analysis
ends (waiting for a worker thread counts). When ``FLIGHTTOKEN_ENGINE_QUEUE_MAX`` slots are taken, a
new capture is refused at once with ``503 engine_busy`` and ``Retry-After: 1``: nothing has been
read or written yet, so the client's retry is safe, and the captures already admitted keep a bounded
wait instead of every request slowing down together. The other instance behind the load balancer,
or the same one a second later, takes the retry.

The captures of one request (an enrolment's 1-5 live captures, analysed concurrently) share the
slot of their first capture: an enrolment is admitted or shed as a whole, never half analysed, and
one request always fits an idle engine. A request is recognised by its request id (bound to the
structlog context by the request middleware); since a client may choose that id, one id lends its
slot to at most ``PER_REQUEST_CAPTURES`` captures, so the queue stays bounded whatever clients send.

Everything here runs on the event loop thread (``FaceEngine.analyse`` is a coroutine), so plain
counters suffice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from flighttoken.errors import Unavailable

log = structlog.get_logger(__name__)
RETRY_AFTER_S = "1"
# Five live captures (the enrolment schema's maximum) plus the chip photo.
PER_REQUEST_CAPTURES = 6


class Admission:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the engine queue must hold at least one capture")
        self.limit = limit
        self.in_flight = 0
        """Captures admitted and not yet finished (running or waiting for the engine)."""
        self.peak = 0
        self.admitted = 0
        self.shed = 0
        self._by_request: dict[str, int] = {}

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a slot for one capture's analysis, or raise ``Unavailable`` (engine_busy) at once."""
        key = structlog.contextvars.get_contextvars().get("request_id")
        held = self._by_request.get(key, 0) if key else 0
        if self.in_flight >= self.limit and not 0 < held < PER_REQUEST_CAPTURES:
            self.shed += 1
            log.info("engine_busy", in_flight=self.in_flight, limit=self.limit)
            raise Unavailable("the face engine is at capacity; retry shortly", code="engine_busy",
                              headers={"Retry-After": RETRY_AFTER_S})
        self.in_flight += 1
        self.admitted += 1
        self.peak = max(self.peak, self.in_flight)
        if key:
            self._by_request[key] = held + 1
        try:
            yield
        finally:
            self.in_flight -= 1
            if key:
                left = self._by_request.pop(key) - 1
                if left:
                    self._by_request[key] = left


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
    yield from (queue, limit, peak, shed)
