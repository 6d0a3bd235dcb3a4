-- The upload engine (sagestore/uploads): one row per upload, whatever protocol is in front.
CREATE TABLE uploads (
    id                  uuid PRIMARY KEY,
    protocol            text NOT NULL CHECK (protocol IN ('multipart', 'offset', 'session', 'tus', 'ietf')),
    -- the target; NULL for uploads without one yet (tus partial uploads for concatenation)
    bucket_id           uuid REFERENCES buckets (id) ON DELETE CASCADE,
    key                 text,
    owner               text NOT NULL,
    content_type        text NOT NULL DEFAULT 'application/octet-stream',
    metadata            jsonb NOT NULL DEFAULT '{}',
    length              bigint CHECK (length >= 0),          -- NULL: deferred (not known yet)
    part_size           bigint NOT NULL CHECK (part_size > 0),
    part_size_grows     boolean NOT NULL DEFAULT false,      -- deferred length: part k is part_size_for(k)
    -- where the S3 multipart upload lives: the final key, or a staging key when the object must be
    -- verified (declared sha256) or kept (retain) before it is published
    s3_bucket           text NOT NULL,
    s3_key              text NOT NULL,
    s3_upload_id        text NOT NULL,
    staged              boolean NOT NULL,
    retain              boolean NOT NULL DEFAULT false,      -- keep the assembled object until expiry
    acknowledged_offset bigint NOT NULL DEFAULT 0 CHECK (acknowledged_offset >= 0),
    tail_key            text,                                -- durable staged tail (< one part)
    tail_size           bigint NOT NULL DEFAULT 0,
    checksum_algorithm  text,                                -- S3 flexible checksum of the MPU
    sha256              text,                                -- declared whole-file sha256 (hex)
    state               text NOT NULL DEFAULT 'open'
                        CHECK (state IN ('open', 'completing', 'completed', 'aborted', 'expired')),
    expires_at          timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- the writer lease: one writer per upload across instances
    writer              text,
    writer_instance     integer,
    writer_until        timestamptz,
    result              jsonb
);
CREATE INDEX uploads_expiry_idx ON uploads (expires_at) WHERE state IN ('open', 'completing', 'completed');
CREATE INDEX uploads_owner_idx ON uploads (owner);
CREATE INDEX uploads_s3_upload_id_idx ON uploads (s3_upload_id);

CREATE TABLE upload_parts (
    upload_id   uuid NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    part_number integer NOT NULL CHECK (part_number BETWEEN 1 AND 10000),
    size        bigint NOT NULL CHECK (size >= 0),
    etag        text NOT NULL,
    checksum    text,          -- the MPU's checksum algorithm value (base64), when it has one
    md5         text,          -- base64 Content-MD5, when known
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (upload_id, part_number)
);

-- Per-part leases: two concurrent writes of one part number never both reach S3 unordered.
CREATE TABLE upload_part_leases (
    upload_id       uuid NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    part_number     integer NOT NULL,
    writer          text NOT NULL,
    writer_instance integer NOT NULL,
    writer_until    timestamptz NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);
