"""The S3 layer. Other layers import from here only."""
from .keys import (STAGING_PREFIX, BucketMapping, Location, metadata_value, parse_bucket_id, sanitize_filename,
                   validate_key)
from .s3 import (MAX_PART_SIZE, ChecksumMismatch, MAX_PARTS, MIN_PART_SIZE, ListPage, ObjectInfo, ObjectStore, ObjectStream,
                 PutResult, error_code, is_not_found, md5_base64, open_object_store, part_size_for,
                 part_size_for_length, PartBody)

__all__ = ["STAGING_PREFIX", "BucketMapping", "Location", "metadata_value", "parse_bucket_id", "sanitize_filename", "validate_key",
           "MAX_PART_SIZE", "MAX_PARTS", "MIN_PART_SIZE", "ChecksumMismatch", "ListPage", "ObjectInfo", "ObjectStore", "ObjectStream",
           "PutResult", "error_code", "is_not_found", "md5_base64", "open_object_store", "part_size_for",
           "part_size_for_length", "PartBody"]
