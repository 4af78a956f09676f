-- Watchlist (issue 5): the authority's wanted persons, their sealed templates, the keys sealing
-- them, alerts raised at touchpoints, and token holds. Apart from the passenger tables on purpose:
-- the flight purge never touches these rows; a subject's templates are deleted when it expires or
-- is removed. Only authority keys reach these tables through the API.

-- Watchlist data keys, wrapped by the master key under the context "watchlist:<id>".
CREATE TABLE watchlist_keys (
    id          uuid PRIMARY KEY,
    kek_id      text NOT NULL,
    wrapped     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE watchlist_subjects (
    id                    uuid PRIMARY KEY,
    case_reference        text NOT NULL,
    reason_code           text NOT NULL,
    added_by              text NOT NULL,            -- the officer, as the authority's console names them
    added_by_device       uuid NOT NULL REFERENCES devices (id),
    created_at            timestamptz NOT NULL DEFAULT now(),
    expires_at            timestamptz NOT NULL,
    removed_at            timestamptz,
    removed_by            text,
    templates_deleted_at  timestamptz               -- set when expiry or removal deleted its templates
);
CREATE INDEX watchlist_subjects_due ON watchlist_subjects (expires_at) WHERE templates_deleted_at IS NULL;

-- One row per enrolment photo: AES-256-GCM under a watchlist data key. Never an image.
CREATE TABLE watchlist_templates (
    subject_id  uuid NOT NULL REFERENCES watchlist_subjects (id) ON DELETE CASCADE,
    n           smallint NOT NULL,
    key_id      uuid NOT NULL REFERENCES watchlist_keys (id),
    model_id    text NOT NULL,
    sealed      bytea NOT NULL,
    quality     real NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject_id, n)
);

CREATE TABLE alerts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    subject_id       uuid NOT NULL REFERENCES watchlist_subjects (id),
    device_id        uuid NOT NULL REFERENCES devices (id),
    touchpoint       text NOT NULL,
    terminal         text,
    gate             text,
    lounge_id        text,
    score            real NOT NULL,
    token_id         uuid,      -- the passenger token the same face matched, if any (no FK: tokens may be purged)
    flight_id        uuid,
    status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'confirmed', 'false_alarm')),
    resolved_at      timestamptz,
    resolved_by      text,
    resolved_device  uuid REFERENCES devices (id),
    note             text
);
CREATE INDEX alerts_open ON alerts (id) WHERE status = 'open';
CREATE INDEX alerts_subject ON alerts (subject_id, at);

-- Why a token is on hold. tokens.on_hold is true while any row here is unreleased, so touchpoints
-- say "see_officer" for every hold alike. Staff holds (airline agents, admins) and authority holds
-- (watchlist alerts) share this table so that neither tells a touchpoint which it is.
CREATE TABLE token_holds (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_id     uuid NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    holder       text NOT NULL CHECK (holder IN ('staff', 'authority')),
    alert_id     bigint REFERENCES alerts (id),
    reason       text NOT NULL,
    placed_by    text NOT NULL,
    placed_at    timestamptz NOT NULL DEFAULT now(),
    released_at  timestamptz,
    released_by  text,
    CHECK ((holder = 'authority') = (alert_id IS NOT NULL))
);
CREATE INDEX token_holds_active ON token_holds (token_id) WHERE released_at IS NULL;
CREATE UNIQUE INDEX token_holds_one_staff ON token_holds (token_id) WHERE holder = 'staff' AND released_at IS NULL;
CREATE INDEX token_holds_alert ON token_holds (alert_id) WHERE alert_id IS NOT NULL;
