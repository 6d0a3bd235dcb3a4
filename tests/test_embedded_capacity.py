"""The embedded SeaweedFS must be able to hold data in all 256 hashed buckets.

Each S3 bucket is a SeaweedFS collection with its own volumes. weed's automatic volume
cap (free disk / volume size) allowed only ~78 on an 80 GB disk, so writes into the 79th
bucket failed with InternalError. This checks the cap the running master reports (over
gRPC with the data dir's client certificate: the master's HTTP API is off)."""
from sagestore.embedded import Embedded, volume_counts


def test_master_allows_a_volume_per_hashed_bucket_and_more(s3_backend, backends_dir):
    _, cap = volume_counts(Embedded(backends_dir / "weed").attach_weed().weed_shell("volume.list"))
    assert cap >= 4 * 256
