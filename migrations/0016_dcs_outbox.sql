-- DCS messages (issue 20, part 6): each airline's webhook, and the outbox its events are delivered
-- from, written in the same transaction as the decision or state change they report.

-- One webhook per airline. The signing secret is 32 random bytes wrapped (AES-256-GCM) under the
-- master key, bound to the airline (flighttoken/dcs/webhooks.py): a database dump alone cannot
-- forge events. It is shown once, when created or rotated, and never returned again.
CREATE TABLE dcs_webhooks (
    airline         text PRIMARY KEY,
    url             text NOT NULL,
    secret_kek_id   text NOT NULL,
    secret_wrapped  bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- At-least-once delivery. A deliverer claims a due row (FOR UPDATE SKIP LOCKED) by setting a lease
-- (claimed_until, claim); a row whose deliverer died is due again once its lease has passed. The
-- payload is what the airline receives under "data": no biometric data, no document number.
CREATE TABLE dcs_outbox (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    airline          text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('passenger.boarded', 'boarding.closed',
                                                   'passenger.opted_out', 'token.revoked')),
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    claimed_until    timestamptz,
    claim            uuid,
    last_error       text,
    delivered_at     timestamptz,
    dead_at          timestamptz
);
CREATE INDEX dcs_outbox_due ON dcs_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX dcs_outbox_dead ON dcs_outbox (airline, dead_at) WHERE status = 'dead';
CREATE INDEX dcs_outbox_delivered ON dcs_outbox (delivered_at) WHERE status = 'delivered';
