"""Transfer settings of the client."""
from __future__ import annotations

from dataclasses import dataclass

MiB = 2**20


@dataclass(frozen=True)
class TransferConfig:
    """How files move.

    threshold: files up to this size go as one streamed PUT (uploads) or one GET (downloads);
        larger uploads use an indexed session, larger downloads parallel Range GETs.
    chunk_size: the download range size; uploads use the chunk size the server picks (>= this is
        not guaranteed: the server's part size and 10 000-chunk limit decide).
    concurrency: chunks (upload) or ranges (download) in flight per file.
    retries: attempts after the first on connection errors, 5xx, 423 (and 503 with Retry-After).
    backoff / max_backoff: exponential backoff base and cap, in seconds, with full jitter.
    connect_timeout / read_timeout: seconds to connect, and without a byte read.
    """
    threshold: int = 16 * MiB
    chunk_size: int = 16 * MiB
    concurrency: int = 8
    retries: int = 8
    backoff: float = 0.5
    max_backoff: float = 10.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.threshold < 0 or self.chunk_size < 1 or self.concurrency < 1 or self.retries < 0:
            raise ValueError("threshold >= 0, chunk_size >= 1, concurrency >= 1 and retries >= 0")
