"""A sha256 whose state can be saved in PostgreSQL and taken up again by any instance.

A sequential upload (tus, IETF, offset chunks) receives its bytes in order, over many requests
and possibly many instances. Hashing each byte as it arrives, and committing the hash state with
the offset, gives the whole-file sha256 at completion without reading the object back, so the
upload can be assembled at its target and verified before it is published (no staging copy).

hashlib cannot export its state, and no maintained library can on OpenSSL 3 (`rehash` reads
OpenSSL 1's private structs; `resumablesha256` is a portable C sha256, 10x slower here). So this
drives OpenSSL's own SHA256_Init/Update/Final through ctypes: SHA256_CTX is a public struct of
<openssl/sha.h> (eight state words, the bit count, one 64-byte block, its fill and the digest
length; 112 bytes), its layout unchanged since OpenSSL 0.9.8, and the functions are still in
libcrypto 3 (deprecated, not removed). The speed is hashlib's: the same OpenSSL code.
Where libcrypto lacks them, `available()` is False and uploads fall back to staging and reading
the object back, as before.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import struct
from typing import Iterable

STATE_SIZE = 112  # sizeof(SHA256_CTX)
_NUM_AND_MD_LEN = struct.Struct("<II")  # the struct's last two fields: bytes in the block, digest length


def _load() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("crypto")
    try:
        lib = ctypes.CDLL(name or "libcrypto.so.3")
        for function in (lib.SHA256_Init, lib.SHA256_Update, lib.SHA256_Final):
            function.restype = ctypes.c_int
        lib.SHA256_Init.argtypes = [ctypes.c_void_p]
        lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        lib.SHA256_Final.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    return lib


_LIB = _load()


def available() -> bool:
    return _LIB is not None


class ResumableSha256:
    """hashlib.sha256's update/hexdigest, plus state() and ResumableSha256(state)."""

    def __init__(self, state: bytes | None = None) -> None:
        if _LIB is None:
            raise RuntimeError("libcrypto's SHA256 functions are not available")
        self._ctx = ctypes.create_string_buffer(STATE_SIZE)
        if state is None:
            _LIB.SHA256_Init(self._ctx)
            return
        state = bytes(state)
        if len(state) != STATE_SIZE:
            raise ValueError(f"a sha256 state is {STATE_SIZE} bytes, not {len(state)}")
        filled, digest_length = _NUM_AND_MD_LEN.unpack_from(state, STATE_SIZE - _NUM_AND_MD_LEN.size)
        if filled >= 64 or digest_length != 32:
            raise ValueError("not a sha256 state")
        ctypes.memmove(self._ctx, state, STATE_SIZE)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if isinstance(data, bytes):
            _LIB.SHA256_Update(self._ctx, data, len(data))
            return
        with memoryview(data) as view:
            if not view.nbytes:
                return
            if view.readonly:  # a view of bytes: ctypes needs a writable buffer to point into
                _LIB.SHA256_Update(self._ctx, view.tobytes(), view.nbytes)
                return
            pointer = (ctypes.c_char * view.nbytes).from_buffer(view)
            _LIB.SHA256_Update(self._ctx, pointer, view.nbytes)
            del pointer  # releases the export, so the caller's bytearray may be resized again

    def update_all(self, pieces: Iterable[bytes | bytearray | memoryview]) -> "ResumableSha256":
        for piece in pieces:
            self.update(piece)
        return self

    def copy(self) -> "ResumableSha256":
        return ResumableSha256(self.state())

    def state(self) -> bytes:
        return self._ctx.raw

    def hexdigest(self) -> str:
        """The digest of the bytes so far; this hash can go on being updated."""
        finished = ctypes.create_string_buffer(self.state(), STATE_SIZE)
        digest = ctypes.create_string_buffer(32)
        _LIB.SHA256_Final(digest, finished)
        return digest.raw.hex()
