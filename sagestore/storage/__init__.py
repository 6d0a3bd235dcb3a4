"""Object storage: the contract every store keeps (contract.py, errors.py), the S3 store (s3.py), the
in-memory store (memory.py), and the mapping of SAGE buckets to physical buckets and keys (keys.py).
Other layers import from here only."""
from .contract import (MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, Capabilities, ListPage, ObjectInfo, ObjectStore,
                       ObjectStream, PutResult, part_size_for, part_size_for_length)
from .digests import md5_base64
from .errors import (ChecksumMismatch, InvalidRange, ObjectNotFound, SourceChanged, StorageBusy, StorageError,
                     StorageRefused, StorageUnavailable)
from .keys import (STAGING_PREFIX, BucketMapping, Location, metadata_value, parse_bucket_id, sanitize_filename,
                   validate_key)
from .memory import MemoryObjectStore, MemorySpace
from .opening import open_configured_store
from .part_body import PartBody
from .s3 import S3ObjectStore, open_object_store

__all__ = ["MAX_PART_SIZE", "MAX_PARTS", "MIN_PART_SIZE", "Capabilities", "ListPage", "ObjectInfo", "ObjectStore",
           "ObjectStream", "PutResult", "part_size_for", "part_size_for_length", "md5_base64", "ChecksumMismatch",
           "InvalidRange", "ObjectNotFound", "SourceChanged", "StorageBusy", "StorageError", "StorageRefused",
           "StorageUnavailable", "STAGING_PREFIX", "BucketMapping", "Location", "metadata_value", "parse_bucket_id",
           "sanitize_filename", "validate_key", "MemoryObjectStore", "MemorySpace", "open_configured_store",
           "PartBody", "S3ObjectStore", "open_object_store"]
