-- Every URL sagestore signs (share links and OSDU locations): revocations, the one upload a PUT URL
-- may make, and the OSDU File service's file records.
CREATE TABLE signed_urls (
    id              uuid PRIMARY KEY,
    method          text NOT NULL CHECK (method IN ('GET', 'PUT')),
    bucket_id       uuid NOT NULL REFERENCES buckets (id) ON DELETE CASCADE,
    key             text NOT NULL,
    purpose         text NOT NULL CHECK (purpose IN ('share', 'osdu')),
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    key_id          text NOT NULL,
    revoked_at      timestamptz,
    file_id         text,            -- OSDU: the file the URL belongs to
    partition_id    text,
    uploaded_at     timestamptz,     -- PUT: the upload through this URL completed (a second one is 409)
    -- PUT: the writer lease while a body streams (one upload at a time per URL, across instances)
    writer          text,
    writer_instance integer,
    writer_until    timestamptz
);
CREATE INDEX signed_urls_creator_idx ON signed_urls (created_by, created_at);
CREATE INDEX signed_urls_file_idx ON signed_urls (partition_id, file_id);

-- The OSDU File service's records: one file per (partition, FileID), stored as a SAGE object.
CREATE TABLE osdu_files (
    partition_id text NOT NULL,
    file_id      text NOT NULL,
    bucket_id    uuid NOT NULL REFERENCES buckets (id) ON DELETE CASCADE,
    key          text NOT NULL,
    driver       text NOT NULL,
    location     text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by   text NOT NULL,
    uploaded_at  timestamptz,
    size         bigint,
    sha256       text,
    metadata_id  text UNIQUE,        -- the dataset--File.Generic record id, once POST files/metadata made one
    metadata     jsonb,
    PRIMARY KEY (partition_id, file_id)
);
CREATE INDEX osdu_files_created_idx ON osdu_files (partition_id, created_at);

-- Each instance caches signed-URL rows (revocation checks); every change or deletion tells them
-- which to drop (LISTEN sagestore_signed_url), as the ACL triggers do.
CREATE FUNCTION sagestore_signed_url_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sagestore_signed_url', OLD.id::text);
    RETURN NULL;
END $$;

CREATE TRIGGER signed_urls_notify AFTER UPDATE OR DELETE ON signed_urls
    FOR EACH ROW EXECUTE FUNCTION sagestore_signed_url_notify();
