"""A large file (test_api_large.SIZE: 256 MiB, 1 GiB opt-in) through a signed PUT and a signed
GET against a real `sagestore serve`: sha256 matches, the server's memory stays flat, and the
server's log never holds a signature."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests

from support.api import SeededReader
from test_api_large import SIZE, PeakRss, assert_flat, download_sha256


def test_large_file_through_signed_put_and_get(server_process):
    server = server_process()
    headers = {"Authorization": "sage user:big"}
    bucket_id = requests.post(f"{server.url}/api/v1/objects", params={"type": "training-data"},
                              headers=headers).json()["id"]
    put_link = requests.post(f"{server.url}/api/v1/shares", headers=headers,
                             json={"bucket_id": bucket_id, "key": "big.bin", "method": "PUT"}).json()
    source = SeededReader(seed=12, size=SIZE)
    with PeakRss(server.process.pid) as upload_rss:
        response = requests.put(put_link["url"], data=source)  # no Authorization header
    assert response.status_code == 201, response.text
    assert source.remaining == 0
    expected = source.digest.hexdigest()
    assert response.json() == {"bucket-id": bucket_id, "key": "big.bin", "size": SIZE, "sha256": expected}

    get_link = requests.post(f"{server.url}/api/v1/shares", headers=headers,
                             json={"bucket_id": bucket_id, "key": "big.bin"}).json()
    with PeakRss(server.process.pid) as download_rss:
        actual, size, _ = download_sha256(get_link["url"], {})
    assert (actual, size) == (expected, SIZE)
    assert_flat(upload_rss, download_rss)
    assert requests.put(put_link["url"], data=b"again").status_code == 409

    log = server.output
    assert "/api/v1/signed/" in log  # the access log names the requests...
    for link in (put_link, get_link):
        signature = parse_qs(urlsplit(link["url"]).query)["sig"][0]
        assert signature not in log  # ...but never their signatures
    requests.delete(f"{server.url}/api/v1/objects/{bucket_id}", headers=headers)
