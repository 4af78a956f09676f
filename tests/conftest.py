"""Shared fixtures: settings, a real PostgreSQL, a fresh database per module, the face engine, the service."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvloop

from flighttoken.db.embedded import EmbeddedPostgres
from flighttoken.settings import CHECKOUT_ROOT, Settings, load_settings
from flighttoken.testing import ServiceFactory, create_database, drop_database

# A test that asks for any of these (directly or through another fixture) needs PostgreSQL, a
# running service or the real models: an integration test. Every other test is a unit test unless
# its module says otherwise (``pytestmark = pytest.mark.integration``: subprocesses, browsers...).
INTEGRATION_FIXTURES = frozenset({"admin_dsn", "database_url", "face_engine", "make_service"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test ``unit`` or ``integration`` (``make test-fast`` runs ``-m unit``)."""
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.integration)
        if (item.get_closest_marker("integration") is None and isinstance(item, pytest.Function)
                and INTEGRATION_FIXTURES & set(item.fixturenames)):
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.unit)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict:
    """Async tests run on uvloop, the loop the service runs on (flighttoken/cli/serve.py)."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    # Development mode, explicitly: DATABASE_URL (CI's) would imply production, whose start-up needs a
    # master key and a metrics token; production mode has its own tests
    # (tests/security/test_development_defaults_in_production.py). No random secondary referrals
    # (issue 17) unless a test sets its share: tests expect a matched passenger to proceed. The
    # service's default is never 0.
    return load_settings(log_format="console", mode="development", secondary_referral_share=0.0)


@pytest.fixture(scope="session")
def admin_dsn() -> Iterator[str]:
    """A superuser DSN: CI's cluster, or the embedded server a newcomer gets."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    embedded = EmbeddedPostgres(Path(CHECKOUT_ROOT) / ".data" / "test")
    dsn = embedded.start()
    try:
        yield dsn
    finally:
        embedded.stop()


@pytest.fixture(scope="module")
async def database_url(admin_dsn: str) -> AsyncIterator[str]:
    """A brand-new, empty database for one test module (migrations not applied)."""
    name, url = await create_database(admin_dsn)
    try:
        yield url
    finally:
        await drop_database(admin_dsn, name)


@pytest.fixture(scope="session")
def face_engine(base_settings: Settings):
    """The real face engine, loaded once for the whole run."""
    from flighttoken.faces.engine import FaceEngine

    return FaceEngine.load(base_settings)


@pytest.fixture(scope="module")
def make_service(base_settings: Settings, database_url: str, face_engine) -> ServiceFactory:
    """The real service on this module's fresh database and the session's face engine:
    ``async with make_service(authority=True, purge_sweep_interval_s=3600) as svc``."""
    return ServiceFactory(base_settings, database_url, face_engine)
