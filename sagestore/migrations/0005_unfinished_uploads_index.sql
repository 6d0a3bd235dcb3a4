-- The caller's unfinished uploads by bucket and key (GET /api/v1/attachment/sessions): a client
-- resumes with no local state by finding its open upload of the same target on the server.
CREATE INDEX uploads_owner_target_open_idx ON uploads (owner, bucket_id, key) WHERE state = 'open';
