"""The resumable sha256 equals hashlib's for any split of the input, across saved states."""
from __future__ import annotations

import hashlib
import os
import random

import pytest

from sagestore.uploads.resumable_sha256 import STATE_SIZE, ResumableSha256, available



def test_libcrypto_has_the_functions_here():
    """Where it lacks them the engine stages sequential uploads as before; this machine (and CI) has
    them, so every test below runs."""
    assert available()


def test_matches_hashlib_for_random_splits_resumed_from_saved_states():
    data = os.urandom(3 * 2**20 + 77)
    rng = random.Random(7)
    for _ in range(20):
        cuts = sorted(rng.sample(range(len(data)), rng.randint(0, 8)))
        state = ResumableSha256().state()
        for start, end in zip([0, *cuts], [*cuts, len(data)]):
            hasher = ResumableSha256(state)  # as another instance would take it up
            piece = data[start:end]
            hasher.update(rng.choice([bytes, bytearray, memoryview])(piece))
            state = hasher.state()
            assert len(state) == STATE_SIZE
        assert ResumableSha256(state).hexdigest() == hashlib.sha256(data).hexdigest()


def test_hexdigest_does_not_end_the_hash_and_copy_is_independent():
    hasher = ResumableSha256()
    hasher.update(b"abc")
    assert hasher.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    twin = hasher.copy()
    hasher.update(b"def")
    assert hasher.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()
    assert twin.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    assert ResumableSha256().hexdigest() == hashlib.sha256(b"").hexdigest()


def test_views_of_a_bytearray_and_of_bytes_both_hash_and_the_bytearray_can_grow_after():
    buffer = bytearray(os.urandom(1000))
    hasher = ResumableSha256()
    hasher.update(memoryview(buffer)[10:500])
    hasher.update(memoryview(bytes(buffer))[500:])
    buffer.extend(b"more")  # no buffer export is left behind
    assert hasher.hexdigest() == hashlib.sha256(bytes(buffer[10:1000])).hexdigest()


@pytest.mark.parametrize("state", [b"", b"x" * 111, b"\0" * STATE_SIZE, b"\xff" * STATE_SIZE])
def test_a_corrupt_state_is_refused(state):
    with pytest.raises(ValueError):
        ResumableSha256(state)
