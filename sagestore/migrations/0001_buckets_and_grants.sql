-- SAGE buckets and their access grants (the Go server's model, with orphans impossible).
CREATE TABLE buckets (
    id                uuid PRIMARY KEY,
    name              text NOT NULL DEFAULT '',
    type              text NOT NULL CHECK (type IN ('none', 'model', 'training-data', 'profile')),
    owner             text NOT NULL,
    archived          boolean NOT NULL DEFAULT false,
    time_created      timestamptz NOT NULL DEFAULT now(),
    time_last_updated timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX buckets_owner_idx ON buckets (owner);

CREATE TABLE grants (
    bucket_id    uuid NOT NULL REFERENCES buckets (id) ON DELETE CASCADE,
    grantee_type text NOT NULL CHECK (grantee_type IN ('USER', 'GROUP')),
    grantee      text NOT NULL,
    permission   text NOT NULL CHECK (permission IN ('READ', 'WRITE', 'READ_ACP', 'WRITE_ACP', 'FULL_CONTROL')),
    PRIMARY KEY (bucket_id, grantee_type, grantee, permission)
);
CREATE INDEX grants_grantee_idx ON grants (grantee_type, grantee);
