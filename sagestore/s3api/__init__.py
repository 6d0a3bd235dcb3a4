"""The S3-compatible API ("the S3 door"): path-style S3 on its own port, one more adapter over the
ACLs, the upload engine and storage. See docs/s3.md."""
