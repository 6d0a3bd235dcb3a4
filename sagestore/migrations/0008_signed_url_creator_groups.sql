-- A signed URL acts as its creator, with the permissions the creator holds at each use. A user's
-- groups come with a token and are not stored anywhere else: keep those the URL was made with, so
-- a grant to one of them counts at each use (and its revocation stops the URL).
ALTER TABLE signed_urls ADD COLUMN creator_groups text[] NOT NULL DEFAULT '{}';

-- The bucket owner's listing of every share link on the bucket
CREATE INDEX signed_urls_bucket_idx ON signed_urls (bucket_id, created_at);
