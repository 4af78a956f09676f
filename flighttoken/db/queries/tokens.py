from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from flighttoken.db.connection import Executor, one

# The token and its flight in one row: what every touchpoint decision needs.
_TOKEN_AND_FLIGHT = """
    SELECT t.id, t.flight_id, t.state, t.on_hold, t.lounge_eligible, t.surname, t.given_names, t.seat,
           t.document_key, f.airline, f.number, f.gate, f.international, f.state AS flight_state,
           f.scheduled_departure, f.window_start
    FROM tokens t JOIN flights f ON f.id = t.flight_id"""


async def insert_consent(conn: Executor, *, consent_id: uuid.UUID, flight_id: uuid.UUID, document_key: bytes,
                         terms_version: str, terms_sha256: str, consented_at: datetime,
                         device_id: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO consents (id, flight_id, document_key, terms_version, terms_sha256, consented_at, device_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        consent_id, flight_id, document_key, terms_version, terms_sha256, consented_at, device_id)


async def by_document(conn: Executor, flight_id: uuid.UUID, document_key: bytes) -> asyncpg.Record | None:
    """The (flight, document) token, locked for the re-enrolment deciding about it."""
    return await conn.fetchrow(
        "SELECT id, state, enrolled_at, booking_reference, on_hold, last_lounge_at FROM tokens"
        " WHERE flight_id = $1 AND document_key = $2 FOR UPDATE",
        flight_id, document_key)


async def insert_token(conn: Executor, *, token_id: uuid.UUID, flight_id: uuid.UUID, document_key: bytes,
                       document_type: str, document_last4: str, issuing_state: str, nationality: str,
                       surname: str, given_names: str, booking_reference: str, seat: str | None,
                       lounge_eligible: bool, consent_id: uuid.UUID) -> asyncpg.Record:
    return one(await conn.fetchrow(
        "INSERT INTO tokens (id, flight_id, document_key, document_type, document_last4, issuing_state,"
        " nationality, surname, given_names, booking_reference, seat, lounge_eligible, consent_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id, state, enrolled_at",
        token_id, flight_id, document_key, document_type, document_last4, issuing_state, nationality, surname,
        given_names, booking_reference, seat, lounge_eligible, consent_id))


async def refresh_booking(conn: Executor, token_id: uuid.UUID, *, seat: str | None, lounge_eligible: bool,
                          consent_id: uuid.UUID) -> None:
    """Seat, lounge eligibility and consent of a re-enrolment; never the booking reference (a
    different one is refused before this)."""
    await conn.execute("UPDATE tokens SET seat = $2, lounge_eligible = $3, consent_id = $4 WHERE id = $1",
                       token_id, seat, lounge_eligible, consent_id)


async def upsert_template(conn: Executor, *, token_id: uuid.UUID, flight_id: uuid.UUID, model_id: str,
                          sealed: bytes, quality: float) -> None:
    await conn.execute(
        "INSERT INTO templates (token_id, flight_id, model_id, sealed, quality) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (token_id) DO UPDATE SET model_id = EXCLUDED.model_id, sealed = EXCLUDED.sealed,"
        " quality = EXCLUDED.quality, updated_at = now()",
        token_id, flight_id, model_id, sealed, quality)


async def template_of(conn: Executor, token_id: uuid.UUID) -> asyncpg.Record | None:
    """The token's sealed template (model_id, sealed, quality), for a 1:1 check at re-enrolment."""
    return await conn.fetchrow("SELECT model_id, sealed, quality FROM templates WHERE token_id = $1", token_id)


async def document_keys(conn: Executor, token_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, bytes]:
    rows = await conn.fetch("SELECT id, document_key FROM tokens WHERE id = ANY($1::uuid[])", list(token_ids))
    return {r["id"]: bytes(r["document_key"]) for r in rows}


async def with_flight(conn: Executor, token_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(_TOKEN_AND_FLIGHT + " WHERE t.id = $1", token_id)


# Templates that belong in a gallery: open flights, live tokens, made by the running model.
_SEARCHABLE = (
    " FROM templates tp JOIN tokens t ON t.id = tp.token_id JOIN flights f ON f.id = t.flight_id"
    " WHERE f.state IN ('scheduled', 'boarding') AND t.state IN ('enrolled', 'immigration_cleared', 'boarded')"
    " AND tp.model_id = $1"
)
_WITH_TEMPLATE = "SELECT t.id AS token_id, t.flight_id, f.window_start, t.state, tp.sealed"


async def searchable_templates(conn: Executor, model_id: str) -> list[asyncpg.Record]:
    """Every template that belongs in a gallery (start-up rebuild)."""
    return await conn.fetch(_WITH_TEMPLATE + _SEARCHABLE, model_id)


async def searchable_index(conn: Executor, model_id: str) -> list[asyncpg.Record]:
    """(token, flight, window) of every template that belongs in a gallery, without the templates."""
    return await conn.fetch("SELECT t.id AS token_id, t.flight_id, f.window_start" + _SEARCHABLE, model_id)


async def searchable_templates_of(conn: Executor, model_id: str,
                                  token_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(_WITH_TEMPLATE + _SEARCHABLE + " AND t.id = ANY($2::uuid[])", model_id, list(token_ids))


async def searchable_templates_of_flight(conn: Executor, model_id: str,
                                         flight_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(_WITH_TEMPLATE + _SEARCHABLE + " AND t.flight_id = $2", model_id, flight_id)
