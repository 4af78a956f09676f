-- The document MAC key (flighttoken/crypto/document_key.py): one random key per deployment, wrapped
-- by the master key under the context "document-mac:<id>", rewrapped by `flighttoken keys rotate`.
-- Document keys in the service database are HMACs under it, so no dump of that database can be
-- enumerated back to document numbers. Never destroyed by a flight purge.
CREATE TABLE document_mac_keys (
    id          uuid PRIMARY KEY,
    kek_id      text NOT NULL,
    wrapped     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    only_one    boolean NOT NULL DEFAULT true UNIQUE CHECK (only_one)   -- two instances starting at once share one
);
