"""Prometheus metrics, one registry per app (no module-level globals)."""
from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


# No `<name>_created` gauge beside every counter: twice the series, and no dashboard reads them.
disable_created_metrics()

# Label values come only from these sets, the router's own resources and the status code,
# so a client cannot create series: made-up methods and unmatched paths collapse into one.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def request_labels(request: web.BaseRequest, status: int) -> tuple[str, str, str]:
    method = request.method if request.method in KNOWN_METHODS else "other"
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    status = status if 100 <= status <= 599 else 500
    return method, route, str(status)


class _Both:
    """Counts into a Go-named counter and its sagestore_ twin at once."""

    def __init__(self, go: Counter, ours: Counter) -> None:
        self._go, self._ours = go, ours

    def inc(self, amount: float = 1) -> None:
        self._go.inc(amount)
        self._ours.inc(amount)

    def labels(self, *values: str) -> "_Both":
        return _Both(self._go.labels(*values), self._ours.labels(*values))


# The Go server's five names, which SAGE's Grafana dashboards query; kept beside our own names
# (prometheus_client adds `_total` to a counter, so these export exactly the Go names).
GO_METRIC_NAMES = ("sage_bucket_creation_errors_total", "bucket_creation_total", "file_upload_total",
                   "file_upload_byte_size_total", "file_download_byte_size_total")


class Metrics:
    """Every metric is `sagestore_*`, with the unit in its name (`_bytes`, `_seconds`) and `_total`
    on counters (Prometheus's conventions); the Go names above are kept only as twins."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, list(labels), registry=r)

        def both(go_name: str, name: str, doc: str, labels: tuple[str, ...] = ()) -> _Both:
            return _Both(counter(go_name, doc, labels), counter(name, doc, labels))

        self.bucket_creation_errors = both("sage_bucket_creation_errors", "sagestore_bucket_creation_errors",
                                           "Bucket creations that failed", ("error",))
        self.bucket_creations = both("bucket_creation", "sagestore_buckets_created", "Buckets created")
        self.file_uploads = both("file_upload", "sagestore_files_uploaded", "Files uploaded")
        self.bytes_uploaded = both("file_upload_byte_size", "sagestore_uploaded_bytes", "Bytes of files uploaded")
        self.bytes_downloaded = both("file_download_byte_size", "sagestore_downloaded_bytes", "Bytes downloaded")
        # every body byte a chunk PUT of an indexed session received, stored or not (a resumed upload's
        # resend cost shows here, where the stored parts count each chunk once)
        self.session_bytes_received = counter("sagestore_session_received_bytes", "Bytes received by session "
                                              "chunk PUTs, including chunks cut off or sent again")
        self.requests = Histogram("sagestore_http_request_duration_seconds", "HTTP request duration",
                                  ["method", "route", "status"], registry=r,
                                  buckets=(0.005, 0.02, 0.1, 0.5, 2, 10, 60, 600))
        # the request histogram's children by label values: labels() validates and converts its
        # arguments and takes a lock on every call, a visible share of a small request. The keys
        # are request_labels' bounded values, which the registry keeps a series of anyway.
        self._request_series: dict[tuple[str, str, str], Any] = {}
        self.reaped = counter("sagestore_uploads_reaped", "Expired uploads cleaned up", ("what",))
        # how completion learnt a declared sha256: hashed while the bytes came ("received":
        # sequential uploads, sessions hashed in order, the multipart proxy's frontier), or by reading
        # the assembled object back from S3 ("read_back": a multipart upload whose parts came from
        # several instances or presigned URLs, out of order beyond the frontier's budget, a restart)
        self.sha256_verifications = counter("sagestore_upload_sha256_verifications", "Whole-file sha256 "
                                            "computations at completion", ("how",))
        # a new request (tus/IETF HEAD or append) found an older one still writing the upload:
        # "finished" when the older one committed within the grace, "fenced" when it was cut off
        self.takeovers = counter("sagestore_upload_takeovers", "Older requests still writing an upload "
                                 "when a new one came", ("outcome",))

        # the S3 door: one series per S3 operation (named by the door, never by the client)
        self.s3_requests = Histogram("sagestore_s3_request_duration_seconds", "S3 API request duration",
                                     ["operation", "status"], registry=r,
                                     buckets=(0.005, 0.02, 0.1, 0.5, 2, 10, 60, 600))

    def observe_s3_request(self, operation: str, status: int, seconds: float) -> None:
        self.s3_requests.labels(operation, str(status if 100 <= status <= 599 else 500)).observe(seconds)

    def observe_request(self, request: web.BaseRequest, status: int, seconds: float) -> None:
        labels = request_labels(request, status)
        series = self._request_series.get(labels)
        if series is None:
            series = self._request_series[labels] = self.requests.labels(*labels)
        series.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
