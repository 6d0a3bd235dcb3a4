"""sage-cli's own test script, tests.sh of sagecontinuum/sage-cli (as of its commit 5e00d43, "fix
tests"), step by step with `sagestore` in place of `./sage-cli.py`, against a real server process.

The script cannot be fetched when the tests run, so its steps are written out here; each step
names the lines of tests.sh it covers and checks what the script checks (its jq, cut, grep and
diff), on the same output. Like the script, every command runs in a directory holding README.md
and temp/, with only SAGE_STORE_URL and SAGE_USER_TOKEN in the environment."""
from __future__ import annotations

import json



README = "# a project\n\nThis file is uploaded, listed and downloaded by sage-cli's test script.\n" * 20


def test_sage_cli_tests_sh_passes_with_sagestore_in_place_of_sage_cli(served, tmp_path):
    token = served.token("alice")
    env = served.cli_env(user=None, SAGE_STORE_URL=served.url, SAGE_USER_TOKEN=token)
    (tmp_path / "README.md").write_text(README)

    def sage(*args: str) -> str:
        """One `sagestore storage ...` in the script's directory; `set -e`: it must succeed."""
        result = served.cli("storage", *args, env=env, cwd=str(tmp_path))
        assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
        assert token not in result.stdout + result.stderr
        return result.stdout

    def first_column(output: str) -> list[str]:  # `cut -f 1 -d ' '`
        return [line.split(" ")[0] for line in output.splitlines()]

    # lines 37-46: create a bucket; jq -r '.id' must give an id
    bucket_id = json.loads(sage("bucket", "create", "--datatype=training-data"))["id"]
    assert bucket_id

    # line 50: upload ./README.md
    sage("files", "upload", bucket_id, "./README.md")

    # lines 53-57: the listing's first column is README.md
    assert first_column(sage("files", "list", bucket_id)) == ["README.md"]

    # lines 61-67: download it to temp/test.md; `diff --brief` finds no difference; rm
    (tmp_path / "temp").mkdir()
    sage("files", "download", bucket_id, "README.md", "--target", "temp/test.md")
    assert (tmp_path / "temp" / "test.md").read_text() == README
    (tmp_path / "temp" / "test.md").unlink()

    # line 71: make the bucket public
    sage("permissions", "public", bucket_id)

    # lines 74-78: the AllUsers READ grant is an object of exactly 3 fields
    # (jq '.[] | select(.grantee=="AllUsers") | select(.permission=="READ") | length')
    grants = json.loads(sage("permissions", "show", bucket_id))
    assert [len(grant) for grant in grants if grant.get("grantee") == "AllUsers"
            and grant.get("permission") == "READ"] == [3], grants

    # line 82: make it private again
    sage("permissions", "delete", bucket_id, "GROUP", "AllUsers")

    # lines 85-88: AllUsers holds nothing any more
    grants = json.loads(sage("permissions", "show", bucket_id))
    assert [grant for grant in grants if grant.get("grantee") == "AllUsers"] == [], grants

    # lines 92-95: upload again; jq '.files_uploaded' is 1
    assert json.loads(sage("files", "upload", bucket_id, "./README.md"))["files_uploaded"] == 1

    # lines 98-101: upload as another key, given with a leading '/'; files_uploaded is 1
    uploaded = sage("files", "upload", bucket_id, "./README.md", "--key", "/directory/test.md")
    assert json.loads(uploaded)["files_uploaded"] == 1

    # line 103: the recursive listing has a line with directory/test.md (grep)
    assert any("directory/test.md" in line for line in sage("files", "list", bucket_id, "--recursive").splitlines())

    # lines 108-115: a small directory tree under temp/
    (tmp_path / "temp" / "a.txt").write_text("test_a\n")
    (tmp_path / "temp" / "dir1" / "dir2").mkdir(parents=True)
    (tmp_path / "temp" / "dir1" / "b.txt").write_text("test_b\n")
    (tmp_path / "temp" / "dir1" / "c.txt").write_text("test_c\n")
    (tmp_path / "temp" / "dir1" / "dir2" / "d.txt").write_text("test_d\n")

    # line 117: upload the directory under the folder /dir-test/
    sage("files", "upload", bucket_id, "./temp", "--key", "/dir-test/")

    # lines 119-122: the recursive listing of the prefix /dir-test/ (leading '/' and all) prints
    # each file as the prefix followed by its key, in this order
    listing = sage("files", "list", bucket_id, "--prefix", "/dir-test/", "--recursive")
    assert first_column(listing) == ["/dir-test/temp/a.txt", "/dir-test/temp/dir1/b.txt",
                                     "/dir-test/temp/dir1/c.txt", "/dir-test/temp/dir1/dir2/d.txt"], listing

    # and the files are the ones uploaded (the script stops at the listing)
    down = tmp_path / "d.txt"
    sage("files", "download", bucket_id, "dir-test/temp/dir1/dir2/d.txt", "--target", str(down))
    assert down.read_text() == "test_d\n"


def test_a_listing_prefix_with_a_leading_slash_reads_the_same_folder(served, tmp_path):
    """sage-storage-py drops one leading '/' of --prefix: both spellings list the same files, and
    each line starts with the prefix as it was given."""
    env = served.cli_env()
    bucket_id = json.loads(served.cli("storage", "bucket", "create", "--datatype", "model", env=env).stdout)["id"]
    (tmp_path / "f.txt").write_text("f\n")
    assert served.cli("storage", "files", "upload", bucket_id, str(tmp_path / "f.txt"), "--key", "x/y/f.txt",
                      env=env).returncode == 0
    lines = {}
    for prefix in ("x/", "/x/", "/x"):
        result = served.cli("storage", "files", "list", bucket_id, "--prefix", prefix, "--recursive", env=env)
        assert result.returncode == 0, result
        lines[prefix] = [line.split(" ")[0] for line in result.stdout.splitlines()]
    assert lines == {"x/": ["x/y/f.txt"], "/x/": ["/x/y/f.txt"], "/x": ["/x/y/f.txt"]}
    not_found = served.cli("storage", "files", "list", bucket_id, "--prefix", "//x/", env=env)
    assert not_found.returncode == 1 and "error" in json.loads(not_found.stdout)  # one '/' only, like sage-cli

