-- S3 access keys of the S3 door. No secret is stored: a key's secret is derived from the server's
-- signing key named in signing_key_id (HMAC of the key id), so a database dump reveals none.
CREATE TABLE s3_access_keys (
    id             text PRIMARY KEY,          -- the access key id clients send: SAGE and 16 more characters
    owner          text NOT NULL,             -- the SAGE user the key acts as
    description    text NOT NULL DEFAULT '',
    signing_key_id text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,      -- never later than the SAGE token the key was made with
    revoked_at     timestamptz
);
CREATE INDEX s3_access_keys_owner_idx ON s3_access_keys (owner, created_at);

-- The groups a user's most recent token carried: an access key acts with these, so a change of a
-- user's groups reaches their keys as soon as they use a new token (not frozen at key creation).
CREATE TABLE s3_user_groups (
    username   text PRIMARY KEY,
    groups     text[] NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now()
);

-- Every instance caches key rows and user groups (one cache, db/s3_cache.py, one LISTEN
-- connection); each change tells them which entry to drop.
CREATE FUNCTION sagestore_s3_key_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 's3_access_keys' THEN
        PERFORM pg_notify('sagestore_s3', 'key:' || COALESCE(NEW.id, OLD.id));
    ELSE
        PERFORM pg_notify('sagestore_s3', 'groups:' || COALESCE(NEW.username, OLD.username));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER s3_access_keys_notify AFTER INSERT OR UPDATE OR DELETE ON s3_access_keys
    FOR EACH ROW EXECUTE FUNCTION sagestore_s3_key_notify();
CREATE TRIGGER s3_user_groups_notify AFTER INSERT OR UPDATE OR DELETE ON s3_user_groups
    FOR EACH ROW EXECUTE FUNCTION sagestore_s3_key_notify();

-- An S3 multipart upload is an upload of the engine like the other protocols'.
ALTER TABLE uploads DROP CONSTRAINT uploads_protocol_check;
ALTER TABLE uploads ADD CONSTRAINT uploads_protocol_check
    CHECK (protocol IN ('multipart', 'offset', 'session', 'tus', 'ietf', 's3'));
