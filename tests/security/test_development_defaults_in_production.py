"""Development defaults never reach production (issue 16): real `flighttoken serve` processes against
a real PostgreSQL.

The attack is a deployment that looks fine: started without a master key it used to create one in
its data dir (next to the data it protects), `--demo` seeded an admin key on any database and
printed it into the log stream, /metrics answered anyone, and a key store on the service database's
cluster shared its backups. Production mode (implied by DATABASE_URL) refuses each with one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from flighttoken.app import create_app
from flighttoken.crypto.keys import generate_master_key
from flighttoken.db.embedded import EmbeddedPostgres
from flighttoken.lifecycle import StartupError, lifespan
from flighttoken.settings import CHECKOUT_ROOT
from flighttoken.testing import create_database, drop_database, free_port

READY_WITHIN_S = 90
METRICS_TOKEN = "scraper-credential"
EXIT_CONFIG = 2


@pytest.fixture
async def database_url(admin_dsn: str):
    """A fresh database per test: each start here brings its own master key and key store, and a
    database remembers the document MAC key it was first keyed with (flighttoken/privacy/document_keys.py)."""
    name, url = await create_database(admin_dsn)
    try:
        yield url
    finally:
        await drop_database(admin_dsn, name)


def _env(tmp_path: Path, database_url: str | None, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTTOKEN_") and k != "DATABASE_URL"}
    env.update(FLIGHTTOKEN_LOG_FORMAT="json", FLIGHTTOKEN_DATA_DIR=str(tmp_path / "data"),
               FLIGHTTOKEN_PORT=str(free_port()))
    if database_url:
        env["DATABASE_URL"] = database_url
    env.update(settings)
    return env


def _production(tmp_path: Path, database_url: str, **settings: str) -> dict[str, str]:
    """Everything production mode asks for: a master key file and a metrics token. No FLIGHTTOKEN_MODE:
    DATABASE_URL implies production."""
    key_file = tmp_path / "master.key"
    key_file.write_text(generate_master_key() + "\n")
    key_file.chmod(0o600)
    return _env(tmp_path, database_url, FLIGHTTOKEN_MASTER_KEY_FILE=str(key_file),
                FLIGHTTOKEN_METRICS_TOKEN=METRICS_TOKEN, **settings)


class Serve:
    """One `flighttoken serve`; stdout (the operator's terminal) and stderr (the log stream) kept apart."""

    def __init__(self, tmp_path: Path, env: dict[str, str], *args: str) -> None:
        self.url = f"http://127.0.0.1:{env['FLIGHTTOKEN_PORT']}"
        self.out, self.err = tmp_path / "stdout", tmp_path / "stderr"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "flighttoken", "serve", *args], env=env,
                                         cwd=CHECKOUT_ROOT, stdout=out, stderr=err)

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def wait_exit_or_ready(self) -> bool:
        """True once ready, False once exited."""
        deadline = time.monotonic() + READY_WITHIN_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return True
            time.sleep(0.2)
        raise AssertionError(f"neither ready nor exited within {READY_WITHIN_S} s:\n{self.stderr()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _refused(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[str, Serve]:
    """Start the service, expecting a refusal; the CLI's one verdict line and the run."""
    run = Serve(tmp_path, env, *args)
    try:
        started = run.wait_exit_or_ready()
    finally:
        run.stop()
    assert not started, f"the service started:\n{run.stderr()}"
    assert run.proc.returncode == EXIT_CONFIG, run.stderr()
    assert "Traceback" not in run.stderr()
    verdicts = [line for line in run.stderr().splitlines() if line.startswith("flighttoken: ")]
    assert len(verdicts) == 1, run.stderr()
    return verdicts[0], run


@contextlib.contextmanager
def _serving(tmp_path: Path, env: dict[str, str], *args: str) -> Iterator[Serve]:
    run = Serve(tmp_path, env, *args)
    try:
        assert run.wait_exit_or_ready(), f"the service did not start:\n{run.stderr()}"
        yield run
    finally:
        run.stop()


def _log_events(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def _add_admin(env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "flighttoken", "devices", "add", "--kind", "admin",
                           "--name", "ops-admin"], env=env, cwd=CHECKOUT_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return next(line.split()[-1] for line in proc.stdout.splitlines() if "API key" in line)


@pytest.fixture(scope="module")
def other_cluster() -> Iterator[str]:
    """A PostgreSQL cluster of its own for the key store (an embedded one: its own initdb)."""
    root = Path(tempfile.mkdtemp(prefix="ftks-"))  # short: the Unix socket path has a length limit
    server = EmbeddedPostgres(root)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("how", ["DATABASE_URL set", "FLIGHTTOKEN_MODE=production"])
def test_production_start_without_a_master_key_gets_no_development_key(how: str, tmp_path: Path,
                                                                        database_url: str) -> None:
    if how == "DATABASE_URL set":
        env = _env(tmp_path, database_url, FLIGHTTOKEN_METRICS_TOKEN=METRICS_TOKEN)
    else:  # the embedded database, but production asked for by name
        env = _env(tmp_path, None, FLIGHTTOKEN_MODE="production", FLIGHTTOKEN_METRICS_TOKEN=METRICS_TOKEN)
    verdict, _ = _refused(tmp_path, env)
    assert "FLIGHTTOKEN_MASTER_KEY_FILE: production mode" in verdict
    assert not (tmp_path / "data" / "master.key").exists(), "a development key was created"


async def test_demo_devices_are_refused_in_production(tmp_path: Path, database_url: str) -> None:
    verdict, run = _refused(tmp_path, _production(tmp_path, database_url), "--demo")
    assert "--demo: production mode" in verdict
    assert "demo-admin" not in run.stdout() + run.stderr()
    conn = await asyncpg.connect(database_url)
    try:
        if await conn.fetchval("SELECT to_regclass('devices') IS NOT NULL"):
            assert await conn.fetchval("SELECT count(*) FROM devices WHERE name LIKE 'demo-%'") == 0
    finally:
        await conn.close()


def test_open_metrics_is_refused_in_production(tmp_path: Path, database_url: str) -> None:
    env = _production(tmp_path, database_url)
    del env["FLIGHTTOKEN_METRICS_TOKEN"]
    verdict, _ = _refused(tmp_path, env)
    assert "FLIGHTTOKEN_METRICS_TOKEN: production mode" in verdict


@pytest.mark.parametrize("keystore", ["default sibling database", "another database, same server"])
async def test_key_store_on_the_service_cluster_is_refused_when_so_set(keystore: str, tmp_path: Path,
                                                                      database_url: str, admin_dsn: str) -> None:
    settings = {"FLIGHTTOKEN_KEYSTORE_SAME_CLUSTER": "refuse"}
    name = None
    if keystore != "default sibling database":
        name, settings["FLIGHTTOKEN_KEYSTORE_URL"] = await create_database(admin_dsn)
    try:
        verdict, _ = _refused(tmp_path, _production(tmp_path, database_url, **settings))
    finally:
        if name:
            await drop_database(admin_dsn, name)
    assert "FLIGHTTOKEN_KEYSTORE_URL: the key store is on the service database's cluster" in verdict


def test_key_store_on_the_service_cluster_is_warned_about(tmp_path: Path, database_url: str) -> None:
    with _serving(tmp_path, _production(tmp_path, database_url)) as run:
        warnings = [e for e in _log_events(run.stderr()) if e.get("event") == "keystore_same_cluster"]
        assert len(warnings) == 1 and warnings[0]["level"] == "warning"
        assert "FLIGHTTOKEN_KEYSTORE_URL" in warnings[0]["detail"]


def test_production_with_everything_configured_starts_and_serves(tmp_path: Path, database_url: str,
                                                                 other_cluster: str) -> None:
    env = _production(tmp_path, database_url, FLIGHTTOKEN_KEYSTORE_URL=other_cluster,
                      FLIGHTTOKEN_KEYSTORE_SAME_CLUSTER="refuse")
    admin_key = _add_admin(env)
    with _serving(tmp_path, env) as run:
        assert httpx.get(f"{run.url}/v1/devices", headers={"Authorization": f"Bearer {admin_key}"}).status_code == 200
        assert httpx.get(f"{run.url}/metrics").status_code == 401
        scrape = httpx.get(f"{run.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert scrape.status_code == 200 and "flighttoken_db_pool_max" in scrape.text
        assert not any(e.get("event") == "keystore_same_cluster" for e in _log_events(run.stderr()))
    assert not (tmp_path / "data" / "master.key").exists()


def test_demo_keys_reach_the_terminal_never_the_json_log(tmp_path: Path, database_url: str) -> None:
    # Development mode, explicitly (DATABASE_URL alone would mean production).
    env = _env(tmp_path, database_url, FLIGHTTOKEN_MODE="development")
    with _serving(tmp_path, env, "--demo") as run:
        keys = {line.split()[1]: line.split()[-1] for line in run.stdout().splitlines()
                if line.strip().startswith(("admin ", "kiosk ", "bag_drop ", "e_security_gate ", "e_channel ",
                                                     "lounge ", "gate "))}
        assert set(keys) == {"demo-admin", "demo-kiosk", "demo-bag-drop", "demo-e-security-gate", "demo-e-channel",
                             "demo-lounge", "demo-gate-23"}
        # A real key, not a decoy: the printed admin key is the one the service accepts.
        r = httpx.get(f"{run.url}/v1/devices", headers={"Authorization": f"Bearer {keys['demo-admin']}"})
        assert r.status_code == 200
    log = run.stderr()
    assert _log_events(log), "expected JSON log lines on stderr"
    leaked = [line for line in log.splitlines() if any(key in line for key in keys.values())]
    assert leaked == [], leaked


async def test_production_app_without_a_master_key_does_not_start_in_process(base_settings, database_url,
                                                                              tmp_path: Path) -> None:
    # The lifecycle's own check, for code that builds the app without the CLI (tests, benchmarks).
    settings = base_settings.replace(mode="", database_url=database_url,
                                       data_dir=str(tmp_path), metrics_token=METRICS_TOKEN)
    app = create_app(settings)
    with pytest.raises(StartupError, match="FLIGHTTOKEN_MASTER_KEY_FILE: production mode"):
        async with lifespan(app):
            pass
    assert app.state.services.pool is None, "it connected before refusing"
    assert not (tmp_path / "master.key").exists()
