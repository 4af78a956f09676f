"""The touchpoint decision write: one statement per identify.

A decision is one round trip, atomic on its own (no BEGIN/COMMIT, nothing for the pool to roll
back): the token's move or lounge entry time (only from the state the decision read, never while
on hold, so a concurrent decision, hold or revoke makes this one ``state_changed``), a boarding's
DCS outbox event, the audit row for a refusal that is evidence of misuse, the journey event carrying
the final reason, and, for an officer referral (a watchlist hit or a random secondary referral), the
alert-like record, the token's hold, the authority's audit row and the notification to other instances.

Every decision runs this same statement, referral or not (issue 17): a referral costs no extra
round trip, so neither the touchpoint nor anyone timing it can tell a referral's cause, or that
there was one, from the statement's shape.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from flighttoken.db.connection import Executor, one

# Data-modifying CTEs all run to completion whether or not the main query reads them. ``moved`` is
# empty when the token was not to move (or be stamped), or its state or hold changed since it was
# read: a write that did not happen turns the decision into ``state_changed`` (not audited, no token
# on the event). $5 is the new state (NULL: stay), $7 the state the decision read.
_RECORD_DECISION = """
WITH moved AS (
    UPDATE tokens SET
        state = coalesce($5::text, state),
        cleared_at = CASE WHEN $5::text = 'immigration_cleared' THEN now() ELSE cleared_at END,
        boarded_at = CASE WHEN $5::text = 'boarded' THEN now() ELSE boarded_at END,
        last_lounge_at = CASE WHEN $6::boolean THEN now() ELSE last_lounge_at END
    -- The same state twice without a lounge entry (a bag drop, a security gate) rewrites nothing
    -- but still proceeds only from the state read and not on hold.
    WHERE id = $4::uuid AND state = $7::text AND NOT on_hold
    RETURNING id, flight_id, booking_reference, seat, boarded_at
), dcs_boarded AS (
    -- The airline's DCS hears of a boarding from the outbox row written by this same statement
    -- (flighttoken/dcs): nothing when the token did not move to boarded or the airline has no webhook.
    INSERT INTO dcs_outbox (airline, kind, payload)
    SELECT f.airline, 'passenger.boarded', jsonb_build_object(
        'token_id', m.id, 'flight_id', f.id, 'flight', f.airline || f.number,
        'scheduled_departure', f.scheduled_departure, 'booking_reference', m.booking_reference,
        'seat', m.seat, 'boarded_at', m.boarded_at, 'gate', f.gate,
        'method', CASE $24::text WHEN 'boarding_pass' THEN 'one_to_one' ELSE 'biometric' END)
    FROM moved m JOIN flights f ON f.id = m.flight_id JOIN dcs_webhooks w ON w.airline = f.airline
    WHERE $5::text = 'boarded' AND $7::text IS DISTINCT FROM 'boarded'
), outcome AS (
    SELECT CASE WHEN $7::text IS NOT NULL AND NOT EXISTS (SELECT FROM moved) THEN 'state_changed'
                ELSE $8::text END AS reason
), audited AS (
    INSERT INTO audit_events (actor, action, outcome, flight_id, token_id, detail)
    SELECT 'device:' || $1::uuid, $2::text || '.identify', 'refused', $3::uuid, $4::uuid,
           jsonb_build_object('reason', $8::text)
    WHERE $9::boolean
-- The referral: empty unless $13 (the alert kind) is set. The hold is taken only if the token
-- still exists; ``moved`` never touches a referred token (a referral has no transition).
), tok AS (
    SELECT id, flight_id FROM tokens WHERE id = $19::uuid AND $13::text IS NOT NULL
), alert AS (
    INSERT INTO alerts (kind, subject_id, device_id, touchpoint, terminal, gate, lounge_id, score, token_id,
                        flight_id)
    SELECT $13::text, $14::uuid, $1::uuid, $2::text, $16::text, $17::text, $18::text, $15::real,
           (SELECT id FROM tok), (SELECT flight_id FROM tok)
    WHERE $13::text IS NOT NULL
    RETURNING id, token_id
), hold AS (
    INSERT INTO token_holds (token_id, holder, alert_id, reason, placed_by)
    SELECT token_id, 'authority', id, 'officer_referral', 'watchlist' FROM alert WHERE token_id IS NOT NULL
    RETURNING token_id
), held AS (
    UPDATE tokens SET on_hold = true WHERE id IN (SELECT token_id FROM hold)
), alert_audited AS (
    INSERT INTO authority_audit_events (actor, action, outcome, detail)
    SELECT 'system:watchlist', 'watchlist.alert', 'ok',
           jsonb_build_object('alert_id', id, 'kind', $13::text, 'subject_id', $14::uuid, 'held', token_id IS NOT NULL)
    FROM alert
), moved_notified AS (
    -- A token that changed state moves between purpose galleries on every instance (sync/apply.py
    -- ``token_moved``, flighttoken.sync.events wire format), announced by the write itself.
    SELECT pg_notify($22::text, jsonb_build_object('kind', 'token_moved', 'origin', $23::text,
                                                   'token_ids', jsonb_build_array(id),
                                                   'payload', jsonb_build_object('state', $5::text))::text)
    FROM moved WHERE $5::text IS NOT NULL AND $22::text <> ''
), notified AS (
    -- A sync event (flighttoken.sync.events wire format) so other instances stream the alert too.
    SELECT pg_notify($20::text, jsonb_build_object('kind', 'alert', 'origin', $21::text,
                                                   'payload', jsonb_build_object('alert_id', id::text))::text)
    FROM alert
)
INSERT INTO journey_events (device_id, touchpoint, flight_id, token_id, decision, reason, score, margin, latency_ms,
                            method, bags)
SELECT $1::uuid, $2::text, $3::uuid,
       CASE WHEN o.reason = 'matched' OR $9::boolean THEN $4::uuid END,
       CASE WHEN o.reason = 'matched' THEN 'proceed' ELSE 'refer' END,
       o.reason, $10::real, $11::real, $12::real, $24::text, $25::smallint
FROM outcome o
-- ``notified`` and ``moved_notified`` are plain SELECTs: they run only because they are read here.
RETURNING id, reason, (SELECT id FROM alert) AS alert_id, (SELECT count(*) FROM notified) AS notified,
          (SELECT count(*) FROM moved_notified) AS moved_notified"""


@dataclass(frozen=True, slots=True)
class Referral:
    """An officer referral to record with the decision: a watchlist hit or a random one."""

    kind: str
    """'watchlist' or 'random'."""
    subject_id: uuid.UUID | None
    score: float | None
    hold_token_id: uuid.UUID | None
    terminal: str | None
    gate: str | None
    lounge_id: str | None
    channel: str
    origin: str


async def record_decision(conn: Executor, *, device_id: uuid.UUID, touchpoint: str, flight_id: uuid.UUID | None,
                          token_id: uuid.UUID | None, reason: str, transition: tuple[str, str] | None,
                          lounge_entry: bool, audit_refusal: bool, score: float | None, margin: float | None,
                          latency_ms: float, referral: Referral | None = None, channel: str = "",
                          origin: str = "", method: str = "face",
                          bags: int | None = None) -> tuple[int, str, int | None]:
    """Write one decision; returns (journey event id, final reason, alert id or None). ``reason``
    is the decision before the write: ``matched`` proceeds unless ``transition`` (expected state,
    new state; the same state twice for a lounge entry or a check that moves nothing) no longer
    applies. ``bags``: what a bag drop reported, kept on the event. ``audit_refusal`` adds
    the audit row (and keeps the token on the event). ``referral`` adds the alert, the hold and the
    authority's audit row. With a sync ``channel`` (and this instance's ``origin``), a state change
    is announced to the other instances by the same statement. ``method`` is how the passenger was
    identified (vocabulary ``IdentifyMethod``)."""
    if lounge_entry and transition is None:
        raise ValueError("a lounge entry carries the state it was decided on")
    expected, new_state = transition if transition else (None, None)
    if new_state == expected:
        new_state = None  # a lounge entry: the token stays where it is
    r = referral or _NO_REFERRAL
    row = one(await conn.fetchrow(_RECORD_DECISION, device_id, touchpoint, flight_id, token_id, new_state,
                                  lounge_entry, expected, reason, audit_refusal, score, margin, latency_ms,
                                  r.kind or None, r.subject_id, r.score, r.terminal, r.gate, r.lounge_id,
                                  r.hold_token_id, r.channel, r.origin, channel, origin, method, bags))
    return row["id"], row["reason"], row["alert_id"]


_NO_REFERRAL = Referral(kind="", subject_id=None, score=None, hold_token_id=None, terminal=None, gate=None,
                        lounge_id=None, channel="", origin="")
