"""The Litestar application: routes, the error mapping, OpenAPI, request context."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin

from flighttoken import __version__
from flighttoken.devices.auth import PUBLIC_PATHS, ApiKeyAuthentication
from flighttoken.errors import exception_to_problem
from flighttoken.flights.controller import FlightController
from flighttoken.health import HealthController
from flighttoken.journey.controller import EnrolmentController, IdentifyController
from flighttoken.lifecycle import lifespan
from flighttoken.middleware import request_context_middleware
from flighttoken.services import Services
from flighttoken.settings import Settings


def create_app(settings: Settings, *, engine: Any = None, demo: bool = False) -> Litestar:
    services = Services(settings=settings, engine=engine, demo=demo)

    def provide_services() -> Services:
        return services

    app = Litestar(
        route_handlers=[HealthController, FlightController, EnrolmentController, IdentifyController],
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        exception_handlers={Exception: exception_to_problem},
        middleware=[
            request_context_middleware,
            DefineMiddleware(ApiKeyAuthentication, exclude=[f"^{p}" for p in sorted(PUBLIC_PATHS)]),
        ],
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
    )
    app.state.services = services
    return app
