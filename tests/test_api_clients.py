"""Requests in the exact shape sage-storage-py and sage-cli send them (requests +
requests-toolbelt MultipartEncoder), against a real `sagestore serve` process.

The two clients parse every 200 body with json.loads and look for an "error" key in
every other one, so each call here checks both."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests
from requests_toolbelt.multipart.encoder import MultipartEncoder

TOKEN = "user:cliuser"


class SageStoragePyShapes:
    """The HTTP requests sage-storage-py makes (method, URL, params, headers, body)."""

    def __init__(self, host: str, token: str | None = TOKEN) -> None:
        self.host = host
        self.headers = {"Authorization": f"sage {token}"} if token else {}

    def call(self, method: str, url: str, **kwargs):
        response = requests.request(method, url, headers={**self.headers, **kwargs.pop("headers", {})},
                                    allow_redirects=True, **kwargs)
        if response.status_code != 200:
            body = response.json()  # an error must be JSON too
            assert "error" in body, body
            return body
        return json.loads(response.text)  # how the client reads 200 bodies

    def create_bucket(self, name, datatype, public=False):
        params = {**({"name": name} if name else {}), **({"type": datatype} if datatype else {}),
                  **({"public": "true"} if public else {})}
        return self.call("POST", f"{self.host}/api/v1/objects", params=params)

    def show_bucket(self, bucket_id):
        return self.call("GET", f"{self.host}/api/v1/objects/{bucket_id}")

    def delete_bucket(self, bucket_id):
        return self.call("DELETE", f"{self.host}/api/v1/objects/{bucket_id}")

    def list_buckets(self):
        return self.call("GET", f"{self.host}/api/v1/objects")

    def get_permissions(self, bucket_id):
        return self.call("GET", f"{self.host}/api/v1/objects/{bucket_id}", params={"permissions": True})

    def add_permissions(self, bucket_id, grantee_type, grantee, permission):
        body = json.dumps({"granteeType": grantee_type, "grantee": grantee, "permission": permission})
        return self.call("PUT", f"{self.host}/api/v1/objects/{bucket_id}", params={"permissions": True}, data=body)

    def delete_permissions(self, bucket_id, grantee_type, grantee, permission=None):
        spec = f"{grantee_type}:{grantee}" + (f":{permission}" if permission else "")
        return self.call("DELETE", f"{self.host}/api/v1/objects/{bucket_id}",
                         params={"permissions": True, "grantee": spec})

    def make_public(self, bucket_id):
        return self.add_permissions(bucket_id, "GROUP", "AllUsers", "READ")

    def upload_file(self, bucket_id, source, key=""):
        with open(source, "rb") as handle:
            encoder = MultipartEncoder(fields={"file": (os.path.basename(source), handle)})
            return self.call("PUT", f"{self.host}/api/v1/objects/{bucket_id}/{key}", data=encoder,
                             headers={"Content-Type": encoder.content_type})

    def upload(self, bucket_id, sources, key=None):
        """Files and directories; a directory's files keep their relative paths under key."""
        key = (key or "").removeprefix("/")
        count = 0
        for source in sources:
            if os.path.isfile(source):
                result = self.upload_file(bucket_id, source, key)
                assert "error" not in result, result
                count += 1
            if os.path.isdir(source):
                top = os.path.basename(source.rstrip("/"))
                for root, _, names in os.walk(source):
                    relative = root[len(source):].lstrip("/")
                    for name in names:
                        result = self.upload_file(bucket_id, os.path.join(root, name),
                                                  os.path.join(key, top, relative, name))
                        assert "error" not in result, result
                        count += 1
        return {"files_uploaded": count}

    def download_file(self, bucket_id, key, target):
        key = key.removeprefix("/")
        target_file = os.path.join(target, os.path.basename(key)) if target.endswith("/") else target
        partial = f"{target_file}.part"
        with requests.get(f"{self.host}/api/v1/objects/{bucket_id}/{key}", headers=self.headers,
                          stream=True) as response:
            response.raise_for_status()
            with open(partial, "wb") as handle:
                for chunk in response.iter_content(chunk_size=1024 * 1024):
                    handle.write(chunk)
        os.rename(partial, target_file)

    def list_files(self, bucket_id, prefix, recursive=None, c_token=None, limit=None):
        prefix = (prefix or "").removeprefix("/")
        params = {**({"ContinuationToken": c_token} if c_token else {}), **({"limit": limit} if limit else {}),
                  **({"recursive": True} if recursive else {})}
        return self.call("GET", f"{self.host}/api/v1/objects/{bucket_id}/{prefix}", params=params)

    def delete_file(self, bucket_id, key=""):
        return self.call("DELETE", f"{self.host}/api/v1/objects/{bucket_id}/{key}", params={})


def cli_files_list(client: SageStoragePyShapes, bucket_id, prefix=None, recursive=False, limit=None,
                   all_pages=False) -> list[str]:
    """The lines `sage-cli storage files list --format table` prints."""
    prefix_text = ""
    if prefix:
        prefix = prefix if prefix.endswith("/") else prefix + "/"
        prefix_text = prefix
    lines, token = [], None
    while True:
        result = client.list_files(bucket_id, prefix, recursive=recursive, c_token=token, limit=limit)
        assert "error" not in result, result
        truncated = "IsTruncated" in result and result["IsTruncated"]
        if not recursive and result.get("CommonPrefixes"):
            lines += [item["Prefix"] for item in result["CommonPrefixes"]]
        for item in result.get("Contents") or []:
            lines.append(f"{prefix_text}{item.get('Key')} {item.get('Size')} {item.get('LastModified')}")
        if not all_pages or not truncated:
            return lines
        assert result["NextContinuationToken"] and result["NextContinuationToken"] != token
        token = result["NextContinuationToken"]


@pytest.fixture
def server(server_process):
    return server_process()


def test_sage_cli_integration_script(server, tmp_path):
    """sage-cli's tests.sh, step by step, in the clients' request shapes."""
    client = SageStoragePyShapes(server.url)
    readme = tmp_path / "README.md"
    readme.write_bytes(b"# a readme\n" + os.urandom(3000))

    bucket = client.create_bucket(None, "training-data")
    bucket_id = bucket["id"]
    assert bucket["type"] == "training-data" and bucket["owner"] == "cliuser"

    assert client.upload(bucket_id, [str(readme)]) == {"files_uploaded": 1}
    assert cli_files_list(client, bucket_id)[0].split(" ")[0] == "README.md"

    (tmp_path / "temp").mkdir()
    client.download_file(bucket_id, "README.md", str(tmp_path / "temp" / "test.md"))
    assert (tmp_path / "temp" / "test.md").read_bytes() == readme.read_bytes()
    assert not (tmp_path / "temp" / "test.md.part").exists()
    (tmp_path / "temp" / "test.md").unlink()

    client.make_public(bucket_id)
    matches = [entry for entry in client.get_permissions(bucket_id)
               if entry["grantee"] == "AllUsers" and entry["permission"] == "READ"]
    assert [len(entry) for entry in matches] == [3]

    assert client.delete_permissions(bucket_id, "GROUP", "AllUsers") == {"deleted": ["GROUP:AllUsers"]}
    assert [e for e in client.get_permissions(bucket_id) if e["grantee"] == "AllUsers"] == []

    assert client.upload(bucket_id, [str(readme)]) == {"files_uploaded": 1}
    assert client.upload(bucket_id, [str(readme)], key="/directory/test.md") == {"files_uploaded": 1}
    assert any("directory/test.md" in line for line in cli_files_list(client, bucket_id, recursive=True))

    temp = tmp_path / "temp"
    (temp / "a.txt").write_text("test_a\n")
    (temp / "dir1" / "dir2").mkdir(parents=True)
    (temp / "dir1" / "b.txt").write_text("test_b\n")
    (temp / "dir1" / "c.txt").write_text("test_c\n")
    (temp / "dir1" / "dir2" / "d.txt").write_text("test_d\n")
    assert client.upload(bucket_id, [str(temp)], key="/dir-test/") == {"files_uploaded": 4}
    lines = cli_files_list(client, bucket_id, prefix="/dir-test/", recursive=True)
    assert [line.split(" ")[0] for line in lines] == ["/dir-test/temp/a.txt", "/dir-test/temp/dir1/b.txt",
                                                      "/dir-test/temp/dir1/c.txt", "/dir-test/temp/dir1/dir2/d.txt"]


def test_sage_storage_py_calls(server, tmp_path):
    client = SageStoragePyShapes(server.url)
    other = SageStoragePyShapes(server.url, "user:someoneelse")
    anonymous = SageStoragePyShapes(server.url, None)

    bucket = client.create_bucket("my-model", "model", public=False)
    bucket_id = bucket["id"]
    assert set(bucket) >= {"id", "name", "owner", "type", "time_created", "time_last_updated"}
    assert client.show_bucket(bucket_id)["name"] == "my-model"
    assert bucket_id in [b["id"] for b in client.list_buckets()]
    assert bucket_id not in [b["id"] for b in other.list_buckets()]
    assert "error" in other.show_bucket(bucket_id)
    assert "error" in anonymous.show_bucket(bucket_id)

    assert client.add_permissions(bucket_id, "USER", "someoneelse", "READ") == {
        "granteeType": "USER", "grantee": "someoneelse", "permission": "READ"}
    assert other.show_bucket(bucket_id)["id"] == bucket_id
    assert client.delete_permissions(bucket_id, "USER", "someoneelse", "READ") == {
        "deleted": ["USER:someoneelse:READ"]}
    assert "error" in other.show_bucket(bucket_id)
    # errors come back as {"error": ...} dicts, which the CLI prints and exits 1 on
    assert "error" in client.add_permissions(bucket_id, "GROUP", "AllUsers", "WRITE")
    assert "error" in client.create_bucket("x", None)

    data = tmp_path / "weights.bin"
    data.write_bytes(os.urandom(2_500_000))
    assert client.upload(bucket_id, [str(data)], key="models/") == {"files_uploaded": 1}
    # more than one source needs a folder key: the client checks that itself; one file may be renamed
    assert client.upload(bucket_id, [str(data)], key="models/renamed.bin") == {"files_uploaded": 1}

    page = client.list_files(bucket_id, "/models/")
    assert [item["Key"] for item in page["Contents"]] == ["renamed.bin", "weights.bin"]
    assert page["Name"] == bucket_id and page["IsTruncated"] is False

    (tmp_path / "downloads").mkdir()
    client.download_file(bucket_id, "/models/weights.bin", str(tmp_path / "downloads") + "/")
    assert Path(tmp_path, "downloads", "weights.bin").read_bytes() == data.read_bytes()
    assert client.delete_file(bucket_id, "models/renamed.bin") == {"deleted": ["models/renamed.bin"]}
    assert "error" in client.delete_file(bucket_id, "models/renamed.bin")
    assert client.delete_bucket(bucket_id) == {"deleted": [bucket_id]}
    assert "error" in client.show_bucket(bucket_id)


def test_cli_lists_every_page(server, tmp_path):
    """`sage-cli storage files list --all --limit N`: follows NextContinuationToken until IsTruncated is false."""
    client = SageStoragePyShapes(server.url)
    bucket_id = client.create_bucket("paged", "training-data")["id"]
    for i in range(25):
        response = requests.put(f"{server.url}/api/v1/objects/{bucket_id}/p/f{i:02d}.txt", data=b"x",
                                headers=client.headers)
        assert response.status_code == 200 and response.json()["key"] == f"p/f{i:02d}.txt"
    lines = cli_files_list(client, bucket_id, prefix="p", limit=10, all_pages=True)
    assert [line.split(" ")[0] for line in lines] == [f"p/f{i:02d}.txt" for i in range(25)]
    first = client.list_files(bucket_id, "p/", limit=10)
    assert first["IsTruncated"] is True and first["KeyCount"] == 10 and first["MaxKeys"] == 10


def test_every_200_body_is_json(server, tmp_path):
    """The Go server answered a zero-part upload with plain text; every 200 here is JSON."""
    headers = {"Authorization": f"sage {TOKEN}"}
    url = server.url
    bucket_id = requests.post(f"{url}/api/v1/objects", params={"type": "none"}, headers=headers).json()["id"]
    encoder = MultipartEncoder(fields={"file": ("f.txt", b"hello", "text/plain")})
    calls = [
        ("GET", f"{url}/", {}), ("GET", f"{url}/api/v1/", {}),
        ("GET", f"{url}/api/v1/objects", {}),
        ("GET", f"{url}/api/v1/objects/{bucket_id}", {}),
        ("GET", f"{url}/api/v1/objects/{bucket_id}?permissions=True", {}),
        ("PUT", f"{url}/api/v1/objects/{bucket_id}?permissions=True",
         {"data": '{"granteeType": "USER", "grantee": "x", "permission": "READ"}'}),
        ("PUT", f"{url}/api/v1/objects/{bucket_id}/", {"data": encoder,
                                                       "headers": {"Content-Type": encoder.content_type}}),
        ("GET", f"{url}/api/v1/objects/{bucket_id}/", {}),
        ("PATCH", f"{url}/api/v1/objects/{bucket_id}", {"data": '{"name": "renamed"}'}),
        ("DELETE", f"{url}/api/v1/objects/{bucket_id}?permissions=True&grantee=USER:x", {}),
        ("DELETE", f"{url}/api/v1/objects/{bucket_id}/f.txt", {}),
        ("DELETE", f"{url}/api/v1/objects/{bucket_id}", {}),
    ]
    for method, target, kwargs in calls:
        response = requests.request(method, target, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)
        assert response.status_code == 200, (method, target, response.text)
        assert response.headers["Content-Type"].startswith("application/json"), (method, target)
        json.loads(response.text)
    # and errors, including the zero-part upload and unknown routes, are JSON too
    bucket_id = requests.post(f"{url}/api/v1/objects", params={"type": "none"}, headers=headers).json()["id"]
    empty = MultipartEncoder(fields={})
    for method, target, kwargs, status in [
        ("PUT", f"{url}/api/v1/objects/{bucket_id}/x", {"data": empty,
                                                        "headers": {"Content-Type": empty.content_type}}, 400),
        ("GET", f"{url}/api/v1/nothing-here", {}, 404),
        ("GET", f"{url}/api/v1/objects/not-a-uuid", {}, 400),
    ]:
        response = requests.request(method, target, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)
        assert response.status_code == status, (method, target)
        assert "error" in response.json()


def test_readme_curl_examples(server, tmp_path):
    """The Go README's curl commands, plus curl -T (raw PUT, Expect: 100-continue) and -OJ."""
    import subprocess

    def curl(*args: str) -> bytes:
        done = subprocess.run(["curl", "-sS", "--fail-with-body", "-H", f"Authorization: sage {TOKEN}", *args],
                              capture_output=True, cwd=tmp_path, timeout=60)
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    bucket_id = json.loads(curl("-X", "POST", f"{server.url}/api/v1/objects?type=training-data&name=mybucket"))["id"]
    data = os.urandom(2 * 2**20 + 11)
    (tmp_path / "photo 1.jpg").write_bytes(data)
    uploaded = json.loads(curl("-X", "PUT", f"{server.url}/api/v1/objects/{bucket_id}/", "-F",
                               "file=@photo 1.jpg"))
    assert uploaded == {"bucket-id": bucket_id, "key": "photo 1.jpg"}
    uploaded = json.loads(curl("-T", "photo 1.jpg", f"{server.url}/api/v1/objects/{bucket_id}/raw/copy.jpg"))
    assert uploaded == {"bucket-id": bucket_id, "key": "raw/copy.jpg"}
    (tmp_path / "out").mkdir()
    curl("-OJ", "--output-dir", "out", f"{server.url}/api/v1/objects/{bucket_id}/raw/copy.jpg")
    assert (tmp_path / "out" / "copy.jpg").read_bytes() == data
    assert curl("-r", "0-9", f"{server.url}/api/v1/objects/{bucket_id}/photo%201.jpg") == data[:10]
    permissions = json.loads(curl("-X", "PUT", f"{server.url}/api/v1/objects/{bucket_id}?permissions", "-d",
                                  '{"granteeType": "USER", "grantee": "otheruser", "permission": "READ"}'))
    assert permissions == {"granteeType": "USER", "grantee": "otheruser", "permission": "READ"}
    listing = json.loads(curl(f"{server.url}/api/v1/objects/{bucket_id}/?recursive"))
    assert [item["Key"] for item in listing["Contents"]] == ["photo 1.jpg", "raw/copy.jpg"]
    assert json.loads(curl("-X", "DELETE", f"{server.url}/api/v1/objects/{bucket_id}")) == {"deleted": [bucket_id]}
