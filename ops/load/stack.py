"""The processes of a load run, all on 127.0.0.1: FlightToken instances and nginx in front of them.

Ports are picked free at start, so a load run never collides with a developer's service on 8000 or
another run's ports; nginx gets ``ops/deploy/nginx.conf`` itself with only the three ports changed,
so the run exercises the proxy settings a deployment uses.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
NGINX_SITE = ROOT / "ops" / "deploy" / "nginx.conf"
# The deployment file's addresses, replaced by free ports in the run's copy.
SITE_UPSTREAMS = ("127.0.0.1:8001", "127.0.0.1:8002")
SITE_LISTEN = "listen 127.0.0.1:8080;"
# Model files may live elsewhere; everything else an instance needs is set by the run.
PASSED_SETTINGS = ("FLIGHTTOKEN_MODEL_DIR", "FLIGHTTOKEN_DETECTOR_FILE", "FLIGHTTOKEN_RECOGNIZER_FILE")
METRICS_TOKEN = secrets.token_urlsafe(24)  # the run's scraper credential, shared by its instances


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def instance_env(dsn: str, key_file: Path, port: int, data_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTTOKEN_") or k in PASSED_SETTINGS}
    # Production mode, as deployed: a master key file and a metrics token (flighttoken/production.py).
    env.update(DATABASE_URL=dsn, FLIGHTTOKEN_PORT=str(port), FLIGHTTOKEN_MASTER_KEY_FILE=str(key_file),
               FLIGHTTOKEN_DATA_DIR=str(data_dir), FLIGHTTOKEN_LOG_LEVEL="warning",
               FLIGHTTOKEN_METRICS_TOKEN=METRICS_TOKEN)
    env.update({f"FLIGHTTOKEN_{k.upper()}": v for k, v in settings.items()})
    return env


class Instance:
    """One ``flighttoken serve`` process, which can be killed with -9 and started again."""

    def __init__(self, port: int, env: dict[str, str], log: Path) -> None:
        self.port, self.env, self.log = port, env, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "flighttoken", "serve"], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    async def is_ready(self, client: httpx.AsyncClient) -> bool:
        try:
            return (await client.get(f"{self.url}/health/ready")).status_code == 200
        except httpx.TransportError:
            return False

    async def wait_ready(self, within_s: float) -> float | None:
        """Seconds until /health/ready answers 200, or None if it did not within ``within_s``."""
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=1) as client:
            while time.monotonic() - started < within_s:
                if self.proc is not None and self.proc.poll() is not None:
                    return None  # it exited: its log says why
                if await self.is_ready(client):
                    return time.monotonic() - started
                await asyncio.sleep(0.1)
        return None

    async def metrics(self) -> str:
        async with httpx.AsyncClient(timeout=5) as client:
            try:
                return (await client.get(f"{self.url}/metrics",
                                         headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).text
            except httpx.TransportError:
                return ""


def nginx_conf(tmp: Path, upstream_ports: list[int], listen_port: int) -> Path:
    site = NGINX_SITE.read_text()
    for old, port in zip(SITE_UPSTREAMS, upstream_ports, strict=True):
        assert site.count(old) == 1, f"{NGINX_SITE} no longer names {old} once"
        site = site.replace(old, f"127.0.0.1:{port}")
    assert site.count(SITE_LISTEN) == 1, f"{NGINX_SITE} no longer has '{SITE_LISTEN}'"
    site = site.replace(SITE_LISTEN, f"listen 127.0.0.1:{listen_port};")
    (tmp / "site.conf").write_text(site)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/site.conf;
}}
""")
    return conf


async def start_nginx(tmp: Path, upstream_ports: list[int], listen_port: int) -> subprocess.Popen[bytes]:
    """nginx as a plain child process (no system service), answering on ``listen_port``."""
    conf = nginx_conf(tmp, upstream_ports, listen_port)
    proc = subprocess.Popen(["nginx", "-e", str(tmp / "nginx-error.log"), "-p", str(tmp), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}; see {tmp / 'nginx-error.log'}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", listen_port)
            writer.close()
            return proc
        except OSError:
            await asyncio.sleep(0.05)
    proc.terminate()
    raise RuntimeError(f"nginx did not listen on {listen_port}; see {tmp / 'nginx-error.log'}")
