"""Prometheus metrics at GET /metrics: request latency by route and device kind, touchpoint
decisions by outcome and reason, gallery sizes, engine batch sizes, purge lag, pool use and the DCS outbox.

Each app has its own registry (tests run several apps in one process). Counters and histograms are
updated as requests happen; gauges describing state (galleries, pool, batches) are read at scrape
time. /metrics carries no personal data; it is open unless FLIGHTTOKEN_METRICS_TOKEN is set, in
which case the scraper sends it as a bearer token.

The public listener's registry never sees an authority route or key (neither exists there); the
authority listener has its own registry and /metrics: its routes' latency and the watchlist's state.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import structlog
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from flighttoken.db.queries import dcs as dcs_q
from flighttoken.db.queries import operations as ops_q
from flighttoken.errors import DATABASE_UNAVAILABLE, ServiceError, Unauthenticated
from flighttoken.faces import admission
from flighttoken.ops.summary import purge_grace_s
from flighttoken.services import Services

log = structlog.get_logger(__name__)
# Identify is tens of milliseconds; enrolment and imports can take seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    def __init__(self, services: Services, *, authority: bool = False) -> None:
        self.services = services
        self.authority = authority
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Histogram(
            "flighttoken_http_request_duration_seconds", "HTTP request latency by route template and caller kind.",
            ["method", "route", "status", "device_kind"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.decisions = Counter(
            "flighttoken_decisions", "Touchpoint decisions by touchpoint kind, outcome and reason.",
            ["touchpoint", "decision", "reason"], registry=self.registry)
        self.purge_overdue = 0
        self.purge_lag_s = 0.0
        self.dcs_outbox: dict[str, int] = {"pending": 0, "dead": 0}
        self.registry.register(_AuthorityCollector(services) if authority else _StateCollector(self))
        ProcessCollector(registry=self.registry)

    # ---- recording -----------------------------------------------------------------------------

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Time every routed request (Litestar runs app middleware after routing, so the route
        template is known; unrouted 404s are not counted)."""

        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_status)
            except Exception as exc:
                status = _status_of(exc)
                raise
            finally:
                user = scope.get("user")
                kind = getattr(getattr(user, "kind", None), "value", "none")
                self.requests.labels(scope["method"], scope.get("path_template") or "unknown",
                                     f"{status // 100}xx", kind).observe(time.perf_counter() - started)

        return middleware

    def record_decision(self, touchpoint: str, decision: str, reason: str) -> None:
        self.decisions.labels(touchpoint, decision, reason).inc()

    # ---- exposition ----------------------------------------------------------------------------

    async def refresh(self) -> None:
        """State that needs the database, read once per scrape."""
        services = self.services
        if services.pool is None or self.authority:  # the authority's registry shows no purges
            return
        now = datetime.now(UTC)
        try:
            count, oldest = await ops_q.overdue_purges(services.pool, now, purge_grace_s(services))
            self.dcs_outbox = await dcs_q.counts(services.pool)
        except DATABASE_UNAVAILABLE:
            log.warning("metrics_database_unavailable")
            return
        self.purge_overdue = count
        self.purge_lag_s = (now - oldest).total_seconds() if oldest else 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _status_of(exc: Exception) -> int:
    if isinstance(exc, ServiceError):
        return exc.status
    if isinstance(exc, HTTPException):
        return exc.status_code
    return 500


class _StateCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # collected only at scrape time

    def collect(self) -> Iterator[Metric]:
        services = self.metrics.services
        yield from _gallery_metrics(services)
        quarantined = GaugeMetricFamily("flighttoken_quarantined_templates",
                                        "Passenger template rows this instance could not decrypt and set aside.")
        quarantined.add_metric([], len(services.quarantine.tokens))
        yield quarantined
        yield from _batch_metrics(services.engine)
        yield from admission.collect(services.engine)
        yield from _pool_metrics(services)
        overdue = GaugeMetricFamily("flighttoken_purges_overdue",
                                    "Flights past departure + purge grace whose data key still exists.")
        overdue.add_metric([], self.metrics.purge_overdue)
        yield overdue
        lag = GaugeMetricFamily("flighttoken_purge_lag_seconds",
                                "How long the oldest overdue purge has been waiting (0 when none).")
        lag.add_metric([], self.metrics.purge_lag_s)
        yield lag
        outbox = GaugeMetricFamily("flighttoken_dcs_outbox_events",
                                   "DCS webhook events waiting for delivery (pending) or given up on (dead).",
                                   labels=["status"])
        for status, n in sorted(self.metrics.dcs_outbox.items()):
            outbox.add_metric([status], n)
        yield outbox


class _AuthorityCollector(Collector):
    """Only on the authority listener: what the watchlist holds and who is listening for alerts."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        watchlist = self.services.watchlist
        subjects = GaugeMetricFamily("flighttoken_watchlist_subjects", "Watchlist subjects searchable in memory.")
        subjects.add_metric([], len(watchlist.gallery.subjects()))
        yield subjects
        # The watchlist's own unreadable rows: the public /metrics never speaks of the watchlist.
        quarantined = GaugeMetricFamily("flighttoken_quarantined_watchlist_templates",
                                        "Watchlist template rows this instance could not decrypt and set aside.")
        quarantined.add_metric([], len(self.services.quarantine.watchlist))
        yield quarantined
        streams = GaugeMetricFamily("flighttoken_alert_streams", "Open alert streams on this instance.")
        streams.add_metric([], watchlist.hub.subscribers)
        yield streams


def _gallery_metrics(services: Services) -> Iterator[Metric]:
    sizes = services.galleries.sizes_by_kind()
    count = GaugeMetricFamily("flighttoken_galleries", "In-memory galleries by kind.", labels=["kind"])
    faces = GaugeMetricFamily("flighttoken_gallery_faces", "Faces held in galleries of this kind.", labels=["kind"])
    largest = GaugeMetricFamily("flighttoken_gallery_largest_faces", "Faces in the largest gallery of this kind.",
                                labels=["kind"])
    for kind, values in sizes.items():
        count.add_metric([kind], len(values))
        faces.add_metric([kind], sum(values))
        largest.add_metric([kind], max(values, default=0))
    yield from (count, faces, largest)


def _batch_metrics(engine: Any) -> Iterator[Metric]:
    if engine is None:
        return
    stats = engine.batch_stats()
    buckets, cumulative = [], 0
    for bound in BATCH_BUCKETS:
        cumulative = sum(n for size, n in stats.sizes.items() if size <= bound)
        buckets.append((str(bound), cumulative))
    buckets.append(("+Inf", stats.batches))
    yield HistogramMetricFamily("flighttoken_engine_batch_size", "Faces per recogniser run (micro-batching).",
                                buckets=buckets, sum_value=stats.items)


def _pool_metrics(services: Services) -> Iterator[Metric]:
    pool = services.pool
    if pool is None:
        return
    connections = GaugeMetricFamily("flighttoken_db_pool_connections", "Database pool connections by state.",
                                    labels=["state"])
    idle = pool.get_idle_size()
    connections.add_metric(["in_use"], pool.get_size() - idle)
    connections.add_metric(["idle"], idle)
    yield connections
    limit = GaugeMetricFamily("flighttoken_db_pool_max", "Most connections the pool may open.")
    limit.add_metric([], pool.get_max_size())
    yield limit


def record_decision(request: Request[Any, Any, Any], touchpoint: str, decision: str, reason: str) -> None:
    """Count one touchpoint decision (called by the identify handler)."""
    metrics: Metrics | None = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.record_decision(touchpoint, decision, reason)


class MetricsController(Controller):
    path = "/metrics"
    include_in_schema = False

    @get("/")
    async def scrape(self, request: Request[Any, Any, Any], services: NamedDependency[Services]) -> Response[bytes]:
        token = services.settings.operations.metrics_token
        if token:
            presented = request.headers.get("authorization", "")
            if not hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
                raise Unauthenticated("send the metrics token as 'Authorization: Bearer <token>'",
                                      code="invalid_metrics_token", headers={"WWW-Authenticate": "Bearer"})
        metrics: Metrics = request.app.state.metrics
        await metrics.refresh()
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
