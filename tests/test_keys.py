"""Key validation, file-name sanitising and the UUID -> S3 bucket mapping (pure functions)."""
from __future__ import annotations

import posixpath
import uuid

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from sagestore.errors import BadRequest
from sagestore.storage import STAGING_PREFIX, BucketMapping, parse_bucket_id, sanitize_filename, validate_key
from sagestore.storage.keys import MAX_KEY_BYTES

BUCKET = "3f2a1c9e-0b7d-4e5f-8a6b-1c2d3e4f5a6b"

ACCEPTED_KEYS = [
    "file.txt",
    "a/b/c/d/e/f/g/h/i/j/deep.bin",
    "données/模型/weights ü.safetensors",
    "with spaces/and  double  spaces.txt",
    "v1.2.3/model.tar.gz",
    "...three-dots-is-a-name",
    "..hidden/.dotfile",
    "a.b/c..d/e.",
    "emoji-\U0001F600.png",
    "trailing-space ",
    "x" * MAX_KEY_BYTES,
    "é" * (MAX_KEY_BYTES // 2) + "x",  # 987 bytes in UTF-8, 494 characters
]

REJECTED_KEYS = {
    "empty": "",
    "dotdot": "..",
    "dot": ".",
    "dotdot segment": "a/../b",
    "dot segment": "a/./b",
    "leading dotdot": "../etc/passwd",
    "trailing dotdot": "a/..",
    "empty segment": "a//b",
    "trailing slash": "a/b/",
    "only slash": "/",
    "leading slash": "/a/b",
    "backslash": "a\\b",
    "backslash traversal": "..\\..\\x",
    "nul": "a\x00b",
    "unit separator": "a\x1fb",
    "delete": "a\x7fb",
    "newline": "a\nb",
    "tab": "a\tb",
    "c1 control": "a\x85b",
    "lone surrogate": "a\ud800b",
    "xml noncharacter": "a\uffffb",
    "988 bytes": "x" * (MAX_KEY_BYTES + 1),
    "988 bytes multibyte": "é" * ((MAX_KEY_BYTES + 1) // 2),
}


def test_max_key_bytes_fits_the_s3_limit_with_the_uuid_prefix():
    assert MAX_KEY_BYTES == 987
    assert len(f"{BUCKET}/".encode()) + MAX_KEY_BYTES == 1024


@pytest.mark.parametrize("key", ACCEPTED_KEYS)
def test_accepted_keys(key):
    assert validate_key(key) == key
    location = BucketMapping().object(BUCKET, key)
    assert location.key == f"{BUCKET}/{key}"


@pytest.mark.parametrize("key", REJECTED_KEYS.values(), ids=REJECTED_KEYS.keys())
def test_rejected_keys(key):
    with pytest.raises(BadRequest) as caught:
        validate_key(key)
    assert caught.value.status == 400
    assert caught.value.body()["error"]
    with pytest.raises(BadRequest):
        BucketMapping().object(BUCKET, key)


def test_non_string_key_is_rejected():
    with pytest.raises(BadRequest):
        validate_key(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("folder", ["", "a/", "a/b/", "données/ü/"])
def test_folder_mode_accepts_empty_or_slash_terminated(folder):
    assert validate_key(folder, folder=True) == folder
    assert BucketMapping().folder(BUCKET, folder).key == f"{BUCKET}/{folder}"


@pytest.mark.parametrize("folder", ["a", "a/b", "/", "/a/", "a//", "../", "a/../", "./", "a\\b/", "a\x00/",
                                    "x" * MAX_KEY_BYTES + "/"])
def test_folder_mode_rejects(folder):
    with pytest.raises(BadRequest):
        validate_key(folder, folder=True)


def test_empty_key_is_only_a_folder():
    with pytest.raises(BadRequest):
        validate_key("")
    assert BucketMapping().folder(BUCKET).key == f"{BUCKET}/"


@pytest.mark.parametrize("name, expected", [
    ("report.pdf", "report.pdf"),
    ("../../x", "x"),
    ("/etc/passwd", "passwd"),
    ("C:\\a\\b.txt", "b.txt"),
    ("dir/sub\\mixed/name.bin", "name.bin"),
    ("  spaced name.txt  ", "spaced name.txt"),
    ("bell\x07.txt", "bell.txt"),
    ("ü模型.bin", "ü模型.bin"),
])
def test_sanitize_filename(name, expected):
    assert sanitize_filename(name) == expected
    validate_key(expected)


@pytest.mark.parametrize("name", ["", "..", ".", "a/", "../..", "C:\\", "   ", "\x00", None])
def test_sanitize_filename_without_a_usable_name(name):
    with pytest.raises(BadRequest) as caught:
        sanitize_filename(name)
    assert caught.value.status == 400


@pytest.mark.parametrize("text", ["3F2A1C9E-0B7D-4E5F-8A6B-1C2D3E4F5A6B", "{3f2a1c9e-0b7d-4e5f-8a6b-1c2d3e4f5a6b}",
                                  "3f2a1c9e0b7d4e5f8a6b1c2d3e4f5a6b"])
def test_parse_bucket_id_canonicalises(text):
    assert parse_bucket_id(text) == BUCKET


@pytest.mark.parametrize("text", ["", "not-a-uuid", "../" + BUCKET, BUCKET + "/x", BUCKET[:-1]])
def test_parse_bucket_id_rejects(text):
    with pytest.raises(BadRequest):
        parse_bucket_id(text)


# --- the bucket mapping ------------------------------------------------------

def test_uuid_maps_to_prefix_plus_first_two_hex_digits():
    mapping = BucketMapping()
    location = mapping.object(BUCKET, "a/b.txt")
    assert location.bucket == "sagedata-3f"
    assert location.key == f"{BUCKET}/a/b.txt"
    assert mapping.s3_bucket("ff" + BUCKET[2:]) == "sagedata-ff"
    assert mapping.s3_bucket("00" + BUCKET[2:]) == "sagedata-00"


def test_256_distinct_buckets():
    mapping = BucketMapping()
    names = mapping.all_s3_buckets()
    assert len(names) == len(set(names)) == 256
    assert names[0] == "sagedata-00" and names[-1] == "sagedata-ff"
    used = {mapping.s3_bucket(f"{shard:02x}" + BUCKET[2:]) for shard in range(256)}
    assert used == set(names)


def test_custom_prefix():
    mapping = BucketMapping(prefix="models-")
    assert mapping.s3_bucket(BUCKET) == "models-3f"
    assert mapping.all_s3_buckets()[0] == "models-00"


def test_bucket_count_16():
    mapping = BucketMapping(count=16)
    names = mapping.all_s3_buckets()
    assert names == [f"sagedata-{shard:02x}" for shard in range(16)]
    used = {mapping.s3_bucket(f"{shard:02x}" + BUCKET[2:]) for shard in range(256)}
    assert used == set(names)
    assert mapping.s3_bucket(BUCKET) == "sagedata-0f"  # 0x3f % 16


def test_single_bucket_mode():
    mapping = BucketMapping(single_bucket="everything")
    assert mapping.all_s3_buckets() == ["everything"]
    for bucket_id in (BUCKET, str(uuid.uuid4()), str(uuid.uuid4())):
        location = mapping.object(bucket_id, "k")
        assert location == type(location)("everything", f"{bucket_id}/k")


@pytest.mark.parametrize("count", [0, -1, 257])
def test_bucket_count_out_of_range(count):
    with pytest.raises(ValueError):
        BucketMapping(count=count)


def test_staging_objects_live_outside_every_bucket_prefix():
    location = BucketMapping().staging(BUCKET, "upload-123/tail")
    assert location.bucket == "sagedata-3f"
    assert location.key == STAGING_PREFIX + "upload-123/tail"
    assert not location.key.startswith(BUCKET)
    for name in ("../x", "a/../b", "", "a//b", "/a", "a b", "a\\b"):
        with pytest.raises(ValueError):
            BucketMapping().staging(BUCKET, name)


# --- nothing escapes its prefix (property-style) -----------------------------

_PIECES = ["a", "é", "模", " ", ".", "..", "/", "//", "\\", "\x00", "\x1f", "\x7f", "\x85",
           "%2e", "%2f", "~", "\ud800", "\uffff", "\u202e", "\u2215", "\uff0f"]
NASTY = st.lists(st.sampled_from(_PIECES), max_size=30).map("".join) | st.text(max_size=30)


def _assert_contained(bucket_id: str, key: str, location_key: str) -> None:
    prefix = f"{bucket_id}/"
    assert location_key.startswith(prefix)
    # the key names the same object after any path normalisation a consumer might apply
    assert posixpath.normpath(location_key) in (location_key, location_key.rstrip("/"))
    assert posixpath.normpath(location_key).startswith(prefix) or location_key == prefix
    assert ".." not in location_key.split("/") and "\\" not in location_key
    assert len(location_key.encode("utf-8")) <= 1024


@hypothesis_settings(max_examples=600, deadline=None)
@given(key=NASTY, bucket_id=st.uuids().map(str), folder=st.booleans())
def test_no_validated_key_leaves_its_prefix(key, bucket_id, folder):
    mapping = BucketMapping()
    try:
        location = mapping.folder(bucket_id, key) if folder else mapping.object(bucket_id, key)
    except BadRequest:
        return
    assert location.bucket == f"sagedata-{bucket_id[:2]}"
    _assert_contained(bucket_id, key, location.key)


@hypothesis_settings(max_examples=300, deadline=None)
@given(name=NASTY, folder=st.sampled_from(["", "a/", "x/y/"]))
def test_sanitized_file_names_stay_inside_the_folder(name, folder):
    try:
        base = sanitize_filename(name)
    except BadRequest:
        return
    assert "/" not in base and "\\" not in base and base not in (".", "..")
    try:
        location = BucketMapping().object(BUCKET, folder + base)
    except BadRequest:
        return  # e.g. a surrogate or noncharacter left in the name: rejected by validate_key
    _assert_contained(BUCKET, folder + base, location.key)
    assert location.key == f"{BUCKET}/{folder}{base}"
