"""Attack: find out from the public listener that authority routes exist (issue 17, tell 1).

On the listener touchpoints, kiosks and airline staff reach, every method on every variant of an
authority path must get exactly what the same variant of an unknown path gets (``alerts`` ->
``alertz``, same length): status, every header (allow, content-type, content-length ...), body
apart from the request id. Requests are written byte for byte on a raw socket, so no client
normalises ``//`` or ``%2e`` away. The rate limiter and the request metrics must not tell them
apart either.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from urllib.parse import urlsplit

import msgspec
import pytest

from tests.support import journey as j
from tests.watchlist.helpers import extra_keys

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
PATHS = ["/v1/watchlist/subjects", "/v1/watchlist/subjects/", "//v1/watchlist/subjects",
         "/v1/watchlist/subjects/%2e", "/v1/alerts", "/v1/alerts/", "/v1/alerts/stream", "/v1/alerts/1/resolve"]
KEYS = ["none", "gate23", "authority"]  # the issue's two key states, and the authority's own key here
_IGNORED_HEADERS = {"x-request-id", "date"}


def twin(path: str) -> str:
    """The same variant of a path that does not exist (same length, so content-length may match)."""
    return path.replace("watchlist", "watchlizt").replace("alerts", "alertz")


@pytest.fixture(scope="module")
async def svc_keys(make_service):
    async with make_service( authority=True) as svc:
        pool = svc.services.db()
        yield svc, {**await j.make_devices(pool), **await extra_keys(pool)}


class Raw(msgspec.Struct):
    status: int
    headers: dict[str, str]
    body: bytes


async def raw_request(base_url: str, method: str, path: str, key: str | None, *,
                      extra: dict[str, str] | None = None) -> Raw:
    """One HTTP/1.1 request exactly as written, read to the end of the connection."""
    url = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    body = b"{}" if method in ("POST", "PUT", "PATCH") else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {url.netloc}", "Connection: close",
             f"Content-Length: {len(body)}"]
    if body:
        lines.append("Content-Type: application/json")
    if key:
        lines.append(f"Authorization: Bearer {key}")
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()
    data = b""
    while chunk := await _read_some(reader):  # to EOF, or until a stream (an open route!) goes quiet
        data += chunk
    writer.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = headers.get(name.strip().lower(), "") + value.strip()
    return Raw(int(status_line.split()[1]), headers, rest)


async def _read_some(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(65536), 3)
    except TimeoutError:
        return b""


def comparable(r: Raw, path: str) -> tuple:
    """Everything a caller sees, with the request id dropped and the path's own name normalised."""
    headers = {k: v for k, v in r.headers.items() if k not in _IGNORED_HEADERS}
    body: object = r.body
    if r.body and r.headers.get("content-type", "").endswith("json"):
        decoded = json.loads(r.body)
        if isinstance(decoded, dict):
            decoded.pop("request_id", None)
            if isinstance(decoded.get("instance"), str):
                decoded["instance"] = twin(decoded["instance"])
        body = decoded
    return r.status, headers, body


async def test_no_method_or_path_variant_tells_an_authority_route_from_an_unknown_path(svc_keys) -> None:
    svc, keys = svc_keys
    differing = []
    cells = list(itertools.product(KEYS, METHODS, PATHS))
    for key_name, method, path in cells:
        key = None if key_name == "none" else keys[key_name]
        real = await raw_request(svc.base_url, method, path, key)
        unknown = await raw_request(svc.base_url, method, twin(path), key)
        if comparable(real, path) != comparable(unknown, twin(path)):
            differing.append((key_name, method, path, real.status, unknown.status))
    assert len(cells) == 3 * 7 * 8
    of_the_issue = [d for d in differing if d[0] != "authority"]  # its 2 key states x 7 methods x 8 paths
    assert differing == [], (f"{len(differing)} of {len(cells)} cells differ ({len(of_the_issue)} of 112 without "
                             f"the authority's key): {differing[:10]}")


@pytest.mark.parametrize("key_name", KEYS)
async def test_a_cors_preflight_and_head_tell_nothing(svc_keys, key_name: str) -> None:
    svc, keys = svc_keys
    key = None if key_name == "none" else keys[key_name]
    preflight = {"Origin": "https://console.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}
    for path in PATHS:
        for method, extra in (("OPTIONS", preflight), ("HEAD", {"Accept": "text/event-stream"})):
            real = await raw_request(svc.base_url, method, path, key, extra=extra)
            unknown = await raw_request(svc.base_url, method, twin(path), key, extra=extra)
            assert comparable(real, path) == comparable(unknown, twin(path)), (method, path)
            assert "allow" not in real.headers and real.status == 404, (method, path, real.status)


@pytest.mark.parametrize("key_name", ["gate23", "authority"])
async def test_the_rate_limiter_does_not_count_authority_paths(svc_keys, key_name: str) -> None:
    """70 quick GETs: today /v1/alerts earns 429s where /v1/alertz earns none."""
    svc, keys = svc_keys
    async with svc.client(keys[key_name]) as client:
        for path in ("/v1/alerts", "/v1/alertz"):
            statuses = await asyncio.gather(*(client.get(path) for _ in range(70)))
            assert {r.status_code for r in statuses} == {404}, (path, sorted({r.status_code for r in statuses}))
            assert not any("ratelimit" in h.lower() or h.lower() == "retry-after" for r in statuses for h in r.headers)


def _request_counts(text: str) -> dict[str, float]:
    """Request-histogram counts by labels, leaving out the scrape's own route."""
    counts = {}
    for line in text.splitlines():
        if line.startswith("flighttoken_http_request_duration_seconds_count{") and 'route="/metrics' not in line:
            labels, value = line.rsplit(" ", 1)
            counts[labels] = float(value)
    return counts


async def test_authority_paths_leave_the_public_metrics_unchanged(svc_keys) -> None:
    svc, keys = svc_keys
    async with svc.client() as scraper:
        before = _request_counts((await scraper.get("/metrics")).text)
        for key_name, path in itertools.product(KEYS, PATHS):
            key = None if key_name == "none" else keys[key_name]
            await raw_request(svc.base_url, "GET", path, key)
            await raw_request(svc.base_url, "POST", path, key)
        after = (await scraper.get("/metrics")).text
    assert _request_counts(after) == before
    assert not re.search(r"watchlist|alert|authority", after, re.IGNORECASE)
