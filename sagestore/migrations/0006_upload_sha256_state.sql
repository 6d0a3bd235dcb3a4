-- A sequential upload (tus, IETF, offset chunks) hashes its bytes as they arrive, and commits the
-- hash with the offset: sha256_state is the resumable sha256 state after the committed full parts
-- (the next request takes it up, on any instance), sha256_so_far the hex digest of every byte up
-- to acknowledged_offset (the staged tail included). NULL: not hashed (uploads made before this,
-- and those that stage and read the object back instead).
ALTER TABLE uploads ADD COLUMN sha256_state bytea, ADD COLUMN sha256_so_far text;
