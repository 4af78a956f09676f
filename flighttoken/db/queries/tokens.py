"""Token SQL: enrolment writes, touchpoint reads, staff look-ups, holds, and how a token ends."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from flighttoken.db.connection import Connection, Executor, one
from flighttoken.vocabulary import TokenState

# A token in one of these has not ended (plain strings: asyncpg binds them as text[]).
LIVE_STATES = tuple(s.value for s in (TokenState.ENROLLED, TokenState.IMMIGRATION_CLEARED, TokenState.BOARDED))

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
                       lounge_eligible: bool, consent_id: uuid.UUID, enrolled_by: str = "kiosk") -> asyncpg.Record:
    """``enrolled_by``: the kind of device that created the token (an e-Security Gate: late enrolment)."""
    return one(await conn.fetchrow(
        "INSERT INTO tokens (id, flight_id, document_key, document_type, document_last4, issuing_state,"
        " nationality, surname, given_names, booking_reference, seat, lounge_eligible, consent_id, enrolled_by)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id, state, enrolled_at",
        token_id, flight_id, document_key, document_type, document_last4, issuing_state, nationality, surname,
        given_names, booking_reference, seat, lounge_eligible, consent_id, enrolled_by))


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
# With what places a token in purpose galleries (decisions/policy.py ``Standing``).
_WITH_TEMPLATE = ("SELECT t.id AS token_id, t.flight_id, f.window_start, t.state, f.international, t.lounge_eligible,"
                  " tp.sealed")


async def searchable_templates(conn: Executor, model_id: str) -> list[asyncpg.Record]:
    """Every template that belongs in a gallery (start-up rebuild)."""
    return await conn.fetch(_WITH_TEMPLATE + _SEARCHABLE, model_id)


async def searchable_index(conn: Executor, model_id: str) -> list[asyncpg.Record]:
    """(token, flight, window, standing) of every template that belongs in a gallery, without the templates."""
    return await conn.fetch("SELECT t.id AS token_id, t.flight_id, f.window_start, t.state, f.international,"
                            " t.lounge_eligible" + _SEARCHABLE, model_id)


async def searchable_templates_of(conn: Executor, model_id: str,
                                  token_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    return await conn.fetch(_WITH_TEMPLATE + _SEARCHABLE + " AND t.id = ANY($2::uuid[])", model_id, list(token_ids))


async def searchable_templates_of_flight(conn: Executor, model_id: str,
                                         flight_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(_WITH_TEMPLATE + _SEARCHABLE + " AND t.flight_id = $2", model_id, flight_id)


# ---- staff look-ups (never a template, a document number or a photo) --------------------------------

_TOKEN_VIEW = """
    SELECT t.id, t.flight_id, f.airline, f.number, f.scheduled_departure, t.state, t.surname, t.given_names,
           t.booking_reference, t.seat, t.document_type, t.document_last4, t.issuing_state, t.nationality,
           t.lounge_eligible, t.enrolled_at, t.cleared_at, t.last_lounge_at, t.boarded_at, t.ended_at,
           t.end_reason, t.on_hold,
           -- Which holds are in force, as airline staff may know them: their own kind, and an officer
           -- referral whatever its cause (a watchlist hit and a random referral look the same).
           EXISTS (SELECT 1 FROM token_holds h WHERE h.token_id = t.id AND h.released_at IS NULL
                   AND h.holder = 'staff') AS staff_hold,
           EXISTS (SELECT 1 FROM token_holds h WHERE h.token_id = t.id AND h.released_at IS NULL
                   AND h.holder = 'authority') AS officer_referral
    FROM tokens t JOIN flights f ON f.id = t.flight_id"""


async def tokens_by_booking(conn: Executor, booking_reference: str, airline: str | None,
                            limit: int = 100) -> list[asyncpg.Record]:
    """``airline`` confines the look-up to one airline's flights (an airline_ops key); None means all."""
    return await conn.fetch(
        _TOKEN_VIEW + " WHERE t.booking_reference = $1 AND ($2::text IS NULL OR f.airline = $2)"
        " ORDER BY f.scheduled_departure DESC, t.surname LIMIT $3", booking_reference, airline, limit)


async def tokens_by_document(conn: Executor, document_key: bytes, airline: str | None,
                             limit: int = 100) -> list[asyncpg.Record]:
    return await conn.fetch(
        _TOKEN_VIEW + " WHERE t.document_key = $1 AND ($2::text IS NULL OR f.airline = $2)"
        " ORDER BY f.scheduled_departure DESC LIMIT $3", document_key, airline, limit)


async def token_view(conn: Executor, token_id: uuid.UUID, *, for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE OF t" if for_update else ""
    return await conn.fetchrow(_TOKEN_VIEW + " WHERE t.id = $1" + lock, token_id)


async def tokens_for_opt_out(conn: Connection, *, document_key: bytes, booking_reference: str,
                             flight_id: uuid.UUID | None, airline: str | None) -> list[asyncpg.Record]:
    """The passenger's tokens (locked): the booking reference AND the document must both match."""
    return await conn.fetch(
        "SELECT t.id, t.flight_id, t.state FROM tokens t JOIN flights f ON f.id = t.flight_id"
        " WHERE t.document_key = $1 AND t.booking_reference = $2"
        " AND ($3::uuid IS NULL OR t.flight_id = $3) AND ($4::text IS NULL OR f.airline = $4)"
        " ORDER BY t.enrolled_at FOR UPDATE OF t",
        document_key, booking_reference, flight_id, airline)


# ---- ending tokens ----------------------------------------------------------------------------------
# One statement for every way a token ends (revocation, opt-out, purge): the templates go and the live
# tokens take their final state, so no ended token ever keeps a template. ``{key}`` is tokens.id or
# tokens.flight_id (templates carry both columns). A trigger (migration 0010) clears document_last4.
_END = """
WITH target AS (SELECT * FROM unnest($1::uuid[], $2::text[]) AS r(key, reason)),
gone AS (DELETE FROM templates WHERE {template_key} = ANY($1::uuid[]) RETURNING token_id, flight_id),
ended AS (
    UPDATE tokens t SET state = $3, ended_at = now(), end_reason = target.reason FROM target
    WHERE t.{key} = target.key AND t.state = ANY($4::text[]) RETURNING t.id, t.flight_id),
changed AS (SELECT token_id AS id, flight_id, false AS ended FROM gone
            UNION ALL SELECT id, flight_id, true FROM ended)
SELECT flight_id, coalesce(array_agg(id) FILTER (WHERE ended), '{{}}') AS ended,
       coalesce(array_agg(id) FILTER (WHERE NOT ended), '{{}}') AS templates_deleted
FROM changed GROUP BY flight_id"""
_END_BY = {"token": _END.format(key="id", template_key="token_id"),
           "flight": _END.format(key="flight_id", template_key="flight_id")}


async def end_tokens(conn: Executor, reasons: dict[uuid.UUID, str], *, state: str,
                     by: str) -> list[asyncpg.Record]:
    """Per flight touched: (flight_id, ended token ids, ids of the tokens whose template was deleted).
    ``reasons`` maps a token id (``by="token"``) or a flight id (``by="flight"``) to its end_reason."""
    return await conn.fetch(_END_BY[by], list(reasons), list(reasons.values()), state, list(LIVE_STATES))


# ---- holds ------------------------------------------------------------------------------------------


async def referral_state(conn: Executor, token_id: uuid.UUID) -> asyncpg.Record:
    """(staff_hold, officer_referral): a staff hold in force; an officer referral in force, whatever
    its cause (watchlist hit or random) — what airline staff may know of a token's holds."""
    return one(await conn.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM token_holds WHERE token_id = $1 AND released_at IS NULL"
        "               AND holder = 'staff') AS staff_hold,"
        " EXISTS (SELECT 1 FROM token_holds WHERE token_id = $1 AND released_at IS NULL"
        "         AND holder = 'authority') AS officer_referral", token_id))


async def release_alert_hold(conn: Executor, alert_id: int, released_by: str) -> list[uuid.UUID]:
    rows = await conn.fetch(
        "UPDATE token_holds SET released_at = now(), released_by = $2"
        " WHERE alert_id = $1 AND released_at IS NULL RETURNING token_id", alert_id, released_by)
    return [r["token_id"] for r in rows]


async def place_staff_hold(conn: Executor, token_id: uuid.UUID, reason: str, placed_by: str) -> bool:
    """True when a new staff hold was placed, False when one was already in force."""
    status = await conn.execute(
        "INSERT INTO token_holds (token_id, holder, reason, placed_by) VALUES ($1, 'staff', $2, $3)"
        " ON CONFLICT (token_id) WHERE holder = 'staff' AND released_at IS NULL DO NOTHING",
        token_id, reason, placed_by)
    return status.endswith(" 1")


async def release_staff_hold(conn: Executor, token_id: uuid.UUID, released_by: str) -> bool:
    status = await conn.execute(
        "UPDATE token_holds SET released_at = now(), released_by = $2"
        " WHERE token_id = $1 AND holder = 'staff' AND released_at IS NULL", token_id, released_by)
    return status != "UPDATE 0"


async def staff_hold_of(conn: Executor, token_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT reason, placed_by, placed_at FROM token_holds"
        " WHERE token_id = $1 AND holder = 'staff' AND released_at IS NULL", token_id)


async def sync_on_hold(conn: Executor, token_id: uuid.UUID) -> None:
    """tokens.on_hold = whether any hold on the token is still in force."""
    await conn.execute(
        "UPDATE tokens SET on_hold = EXISTS (SELECT 1 FROM token_holds h WHERE h.token_id = $1"
        " AND h.released_at IS NULL) WHERE id = $1", token_id)


async def token_for_staff(conn: Executor, token_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT t.id, t.flight_id, f.airline FROM tokens t JOIN flights f ON f.id = t.flight_id WHERE t.id = $1"
        " FOR UPDATE OF t", token_id)


async def live_on_booking(conn: Executor, flight_id: uuid.UUID, booking_reference: str) -> list[asyncpg.Record]:
    """The flight's live tokens under this booking reference, with their flight (the touchpoint row)
    and names: a booking may hold several passengers; the caller picks by name (a boarding pass)."""
    return await conn.fetch(
        _TOKEN_AND_FLIGHT + " WHERE t.flight_id = $1 AND t.booking_reference = $2 AND t.state = ANY($3::text[])",
        flight_id, booking_reference, list(LIVE_STATES))
