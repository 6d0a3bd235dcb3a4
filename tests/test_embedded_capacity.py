"""The embedded SeaweedFS must be able to hold data in all 256 hashed buckets.

Each S3 bucket is a SeaweedFS collection with its own volumes. weed's automatic volume
cap (free disk / volume size) allowed only ~78 on an 80 GB disk, so writes into the 79th
bucket failed with InternalError. This checks the cap the running master reports."""
import json

import requests


def test_master_allows_a_volume_per_hashed_bucket_and_more(s3_backend, backends_dir):
    ports = json.loads((backends_dir / "weed" / "run" / "ports.json").read_text())
    status = requests.get(f"http://127.0.0.1:{ports['weed-master']}/dir/status", timeout=5).json()
    assert status["Topology"]["Max"] >= 4 * 256
