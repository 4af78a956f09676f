"""The real `flighttoken serve` process: the newcomer's embedded path, signals, crash recovery and
one-line start-up errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from flighttoken.crypto.keys import generate_master_key
from flighttoken.testing import free_port
from tests.foundation.test_embedded_postgres import postgres_running

pytestmark = pytest.mark.integration  # the service in a subprocess, embedded PostgreSQL

READY_WITHIN_S = 60


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTTOKEN_") and k != "DATABASE_URL"}
    env.update(FLIGHTTOKEN_LOG_FORMAT="console", **extra)
    return env


def _start(data_dir: Path, port: int, *args: str) -> subprocess.Popen[str]:
    # No DATABASE_URL: the embedded server, in development mode (as `make run`).
    return subprocess.Popen([sys.executable, "-m", "flighttoken", "serve", *args],
                            env=_env(FLIGHTTOKEN_DATA_DIR=str(data_dir), FLIGHTTOKEN_PORT=str(port)),
                            stdout=subprocess.PIPE if "--demo" in args else subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _wait_ready(proc: subprocess.Popen[str], port: int) -> float:
    started = time.monotonic()
    while time.monotonic() - started < READY_WITHIN_S:
        assert proc.poll() is None, f"service exited: {proc.stderr.read() if proc.stderr else ''}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready within {READY_WITHIN_S} s")


@pytest.mark.embedded
def test_embedded_service_stops_its_database_on_sigterm_and_reuses_it(tmp_path: Path) -> None:
    port = free_port()
    first = _start(tmp_path, port, "--demo")
    _wait_ready(first, port)
    first.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal so process managers see it.
    assert first.wait(timeout=30) in (0, -signal.SIGTERM)
    stdout = first.stdout.read() if first.stdout else ""  # demo keys: the terminal, never the log stream
    key = next(line.split()[-1] for line in stdout.splitlines() if "demo-admin" in line)
    assert not postgres_running(tmp_path / "pg"), "SIGTERM must stop the embedded server"

    second = _start(tmp_path, port)
    try:
        _wait_ready(second, port)
        # The admin key created by the first run still works: same cluster, same data.
        r = httpx.get(f"http://127.0.0.1:{port}/v1/flights/00000000-0000-0000-0000-000000000000",
                      headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 404 and r.json()["code"] == "flight_not_found"
    finally:
        second.send_signal(signal.SIGINT)
        assert second.wait(timeout=30) in (0, 130)
        assert "Traceback" not in (second.stderr.read() if second.stderr else "")
    assert not postgres_running(tmp_path / "pg"), "Ctrl-C must stop the embedded server"


@pytest.mark.embedded
def test_a_service_killed_with_minus_9_starts_again(tmp_path: Path) -> None:
    port = free_port()
    first = _start(tmp_path, port)
    _wait_ready(first, port)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert postgres_running(tmp_path / "pg")

    second = _start(tmp_path, port)
    _wait_ready(second, port)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) in (0, -signal.SIGTERM)
    assert not postgres_running(tmp_path / "pg")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}, "DATABASE_URL: cannot connect"),
        ({"FLIGHTTOKEN_MODEL_DIR": "/nonexistent/models"}, "FLIGHTTOKEN_MODEL_DIR"),
        ({"FLIGHTTOKEN_PORT": "eighty"}, "FLIGHTTOKEN_PORT"),
        ({"FLIGHTTOKEN_DATA_DIR": "/dev/null/data"}, "FLIGHTTOKEN_DATA_DIR"),
    ],
)
def test_start_up_problems_end_with_one_line_that_says_what_to_fix(env: dict[str, str], expected: str,
                                                                   database_url: str, tmp_path: Path) -> None:
    # Production mode's own requirements met, so each start-up fails on the problem under test.
    base = {"DATABASE_URL": database_url, "FLIGHTTOKEN_PORT": str(free_port()),
            "FLIGHTTOKEN_DATA_DIR": str(tmp_path), "FLIGHTTOKEN_MASTER_KEY": generate_master_key(),
            "FLIGHTTOKEN_METRICS_TOKEN": "scraper-token"}
    if "FLIGHTTOKEN_DATA_DIR" in env:
        base.pop("DATABASE_URL")  # the data dir only matters for the embedded server
    proc = subprocess.run([sys.executable, "-m", "flighttoken", "serve"], env=_env(**{**base, **env}),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    # Log lines from uvicorn may interleave; the CLI's own verdict is one line of its own.
    verdicts = [line for line in proc.stderr.splitlines() if line.startswith("flighttoken: ")]
    assert len(verdicts) == 1 and expected in verdicts[0], proc.stderr
