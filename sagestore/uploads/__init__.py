"""THE upload engine: one state machine under every large-upload protocol."""
from .checksums import ALGORITHMS, S3_CHECKSUM_ALGORITHMS
from .common import SEQUENTIAL_PROTOCOLS, ChunkChecksum, LeaseLost
from .engine import UploadEngine
from .model import (ABORTED, COMPLETED, COMPLETING, EXPIRED, OPEN, PROTOCOLS, ChecksumMismatch, DigestMismatch,
                    MissingParts, OffsetMismatch, Part, Upload, choose_part_size)
from .table import TRANSITIONS, IllegalTransition

__all__ = ["ALGORITHMS", "S3_CHECKSUM_ALGORITHMS", "SEQUENTIAL_PROTOCOLS", "ChunkChecksum", "LeaseLost",
           "UploadEngine", "ABORTED", "COMPLETED", "COMPLETING", "EXPIRED", "OPEN", "PROTOCOLS", "ChecksumMismatch",
           "DigestMismatch", "MissingParts", "OffsetMismatch", "Part", "Upload", "choose_part_size", "TRANSITIONS",
           "IllegalTransition"]
