"""The Litestar applications: routes, the error mapping, OpenAPI, request context.

Two apps share one ``Services`` in one process: the public app (touchpoints, kiosks, airline staff,
admins) and, when ``FLIGHTTOKEN_AUTHORITY_PORT`` is set, the authority's app with only the
watchlist, alerts, health and its own metrics (``flighttoken/listeners.py`` serves both). The
watchlist routes are not hidden on the public app: they are not there, so every method and path
variant of them is an unknown path, untouched by the rate limiter and the metrics.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.middleware.rate_limit import RateLimitConfig, get_remote_address
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin

from flighttoken import __version__
from flighttoken.admin.controller import DeviceController, TokenController
from flighttoken.dcs.controller import DeadLetterController, WebhookController
from flighttoken.devices.auth import (
    AUTHORITY_KINDS,
    PUBLIC_KINDS,
    PUBLIC_PATHS,
    ApiKeyAuthentication,
    require_device,
)
from flighttoken.devices.model import DeviceKind
from flighttoken.errors import exception_to_problem
from flighttoken.flights.controller import FlightController
from flighttoken.health import HealthController
from flighttoken.journey.controller import EnrolmentController, IdentifyController, ManualBoardingController
from flighttoken.lifecycle import lifespan
from flighttoken.metrics import Metrics, MetricsController
from flighttoken.middleware import request_context_middleware, slow_client_middleware
from flighttoken.ops.controller import OpsApiController, OpsPageController
from flighttoken.privacy.controller import AuditController, OptOutController, PurgeReceiptController
from flighttoken.services import Services
from flighttoken.settings import Settings
from flighttoken.watchlist.controller import AlertController, StaffHoldController, WatchlistController


def _device_or_address(request: Request) -> str:
    user = request.scope.get("user")
    return f"device:{user.id}" if user is not None else get_remote_address(request)


def _middleware(services: Services, metrics: Metrics, kinds: frozenset[DeviceKind]) -> list[Any]:
    settings = services.settings
    return [
        request_context_middleware,
        slow_client_middleware(settings.http.request_body_timeout_s),
        metrics.middleware,
        DefineMiddleware(ApiKeyAuthentication, kinds=kinds, exclude=[f"^{p}" for p in sorted(PUBLIC_PATHS)]),
        # After authentication, so the limit is per device key, not per address (many devices
        # may sit behind one NAT or load balancer).
        RateLimitConfig(rate_limit=("second", settings.http.rate_limit_per_second),
                        identifier_for_request=_device_or_address,
                        exclude=[f"^{p}" for p in sorted(PUBLIC_PATHS)],
                        # Off so that a hidden route's 404 carries no header an unknown path lacks.
                        set_rate_limit_headers=False).middleware,
    ]


def create_app(settings: Settings, *, engine: Any = None, demo: bool = False) -> Litestar:
    """The public app; ``app.state.authority_app`` is the authority's (None when its port is unset)."""
    services = Services(settings=settings, engine=engine, demo=demo)
    metrics = Metrics(services)

    def provide_services() -> Services:
        return services

    app = Litestar(
        route_handlers=[HealthController, FlightController, EnrolmentController, IdentifyController,
                        ManualBoardingController, StaffHoldController,
                        TokenController, DeviceController, OpsPageController, OpsApiController, MetricsController,
                        OptOutController, PurgeReceiptController, AuditController, WebhookController,
                        DeadLetterController],
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        exception_handlers={Exception: exception_to_problem},
        guards=[require_device],
        # An authority key is an unknown key here: its requests are counted and limited as anonymous.
        middleware=_middleware(services, metrics, PUBLIC_KINDS),
        request_max_body_size=settings.http.max_body_bytes,
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(
            title="FlightToken",
            version=__version__,
            description="Per-flight biometric tokens for check-in kiosks, immigration e-channels, "
                        "lounges and boarding gates.",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin(), ScalarRenderPlugin(path="/scalar")],
        ),
        debug=False,
        # structlog (flighttoken/logs.py) owns logging: Litestar's default config would replace the root
        # handler with its queue listener and print every event as a Python dict, not one JSON line.
        logging_config=None,
    )
    app.state.services = services
    app.state.metrics = metrics
    app.state.authority_app = create_authority_app(services) if settings.http.authority_port else None
    return app


def create_authority_app(services: Services) -> Litestar:
    """The authority's listener: watchlist, alerts, health and its own metrics, nothing else.

    No lifespan of its own: the public app's starts and stops the shared ``Services``; the listener
    serving both (flighttoken/listeners.py) accepts connections only once that is done.
    """
    metrics = Metrics(services, authority=True)

    def provide_services() -> Services:
        return services

    app = Litestar(
        route_handlers=[HealthController, WatchlistController, AlertController, MetricsController],
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        exception_handlers={Exception: exception_to_problem},
        guards=[require_device],
        middleware=_middleware(services, metrics, AUTHORITY_KINDS),
        request_max_body_size=services.settings.http.max_body_bytes,
        openapi_config=None,
        debug=False,
        logging_config=None,
    )
    app.state.services = services
    app.state.metrics = metrics
    return app
