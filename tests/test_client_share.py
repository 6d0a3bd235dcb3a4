"""Share links through the client library and `sagestore share`, on issue 12's contract
(POST/GET/DELETE /api/v1/shares). These pass once the shares branch is merged: without it the
server answers 404 to /api/v1/shares."""
from __future__ import annotations

import json

import requests

from sagestore.client import Client, NotFound



def test_share_links_from_the_library(served):
    with Client(served.url, served.token("alice")) as alice:
        bucket_id = alice.create_bucket("model")["id"]
        alice.upload_file(bucket_id, "shared.bin", __file__)
        share = alice.create_share(bucket_id, "shared.bin", expires_in=600)
        assert share["method"] == "GET" and share["key"] == "shared.bin" and share["bucket_id"] == bucket_id
        got = requests.get(share["url"], timeout=60)  # no Authorization header
        assert got.status_code == 200 and got.content == open(__file__, "rb").read()
        assert share["id"] in [s["id"] for s in alice.list_shares(bucket_id)]
        upload = alice.create_share(bucket_id, "dropped.txt", method="PUT", expires_in=600)
        assert requests.put(upload["url"], data=b"dropped in", timeout=60).status_code in (200, 201, 204)
        assert alice.stat(bucket_id, "dropped.txt").size == len(b"dropped in")
        alice.revoke_share(share["id"])
        assert requests.get(share["url"], timeout=60).status_code >= 400
        with Client(served.url, served.token("bob")) as bob:
            try:
                bob.create_share(bucket_id, "shared.bin")
                raise AssertionError("bob has no READ on the bucket")
            except NotFound:
                pass


def test_share_command(served):
    with Client(served.url, served.token("alice")) as alice:
        bucket_id = alice.create_bucket("model")["id"]
        alice.upload_file(bucket_id, "cli.txt", __file__)
    result = served.cli("share", f"sage://{bucket_id}/cli.txt", "--expires", "1h")
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert url.startswith("http") and requests.get(url, timeout=60).status_code == 200
    record = json.loads(served.cli("share", "--json", f"sage://{bucket_id}/up.txt", "--put",
                                   "--expires", "15m").stdout)
    assert record["method"] == "PUT"
    assert served.cli("share", f"sage://{bucket_id}/cli.txt", "--expires", "soon").returncode == 2
