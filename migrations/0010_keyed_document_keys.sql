-- Document keys become keyed MACs, and the last four digits of a document live only as long as its token.
--
-- Until now tokens.document_key and consents.document_key were SHA-256(state|type|number): a dump of
-- this database gave back every document number by enumeration. The service rewrites each of them to
-- HMAC(k, that digest) inside this migration's transaction, with the migration lock held, under the
-- document MAC key that lives wrapped in the key store (flighttoken/crypto/document_key.py), and says
-- so with flighttoken.document_keys_keyed = 'on'. Any other path (a bare `flighttoken migrate` on a
-- database holding tokens or consents) is refused here, so no unkeyed digest outlives this version.
-- Stop instances of earlier releases before it runs: they would keep writing unkeyed digests.
DO $$
BEGIN
    IF current_setting('flighttoken.document_keys_keyed', true) IS DISTINCT FROM 'on'
       AND (EXISTS (SELECT 1 FROM tokens) OR EXISTS (SELECT 1 FROM consents)) THEN
        RAISE EXCEPTION 'tokens / consents still hold unkeyed document digests: start the service once '
                        '(flighttoken serve) with its master key and key store; it keys them and then applies '
                        'this migration'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END $$;

-- The id (never the key) of the document MAC key every document key here was made with: an instance
-- given another deployment's key store, or a lost one's replacement, refuses to start.
CREATE TABLE document_mac_key (
    key_id    uuid NOT NULL,
    only_one  boolean PRIMARY KEY DEFAULT true CHECK (only_one)
);
COMMENT ON TABLE document_mac_key IS 'id of the document MAC key in the key store (never key material)';
COMMENT ON COLUMN tokens.document_key IS 'HMAC-SHA256 under the document MAC key (key store) of sha256(issuing state|type|number)';
COMMENT ON COLUMN consents.document_key IS 'as tokens.document_key';

-- The last four characters help staff tell passengers apart while a token lives; once it has ended
-- (revoked, opted out, expired by a purge) they go, whichever statement ended it.
ALTER TABLE tokens ALTER COLUMN document_last4 DROP NOT NULL;
CREATE FUNCTION forget_ended_document_last4() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.document_last4 := NULL;
    RETURN NEW;
END $$;
CREATE TRIGGER tokens_last4_only_while_live BEFORE INSERT OR UPDATE ON tokens
    FOR EACH ROW WHEN (NEW.document_last4 IS NOT NULL AND (NEW.state IN ('revoked', 'expired') OR NEW.ended_at IS NOT NULL))
    EXECUTE FUNCTION forget_ended_document_last4();
UPDATE tokens SET document_last4 = NULL WHERE state IN ('revoked', 'expired') OR ended_at IS NOT NULL;
