-- An indexed session that declares a sha256 hashes its chunks in order as they are stored: the
-- upload's sha256_state / sha256_so_far / acknowledged_offset then cover the chunks hashed so far,
-- and each hashed part keeps the state after it, so that a chunk sent again is compared with the
-- bytes that were hashed (uploads/ordered.py). NULL: a part that was not hashed in order.
ALTER TABLE upload_parts ADD COLUMN sha256_state bytea;
