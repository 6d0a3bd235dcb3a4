"""Prometheus metrics, one registry per app (no module-level globals)."""
from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


# Label values come only from these sets, the router's own resources and the status code,
# so a client cannot create series: made-up methods and unmatched paths collapse into one.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def request_labels(request: web.BaseRequest, status: int) -> tuple[str, str, str]:
    method = request.method if request.method in KNOWN_METHODS else "other"
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    status = status if 100 <= status <= 599 else 500
    return method, route, str(status)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # names of the Go server, kept for existing dashboards
        self.bucket_creation_errors = Counter("sage_bucket_creation_errors", "Bucket creations that failed",
                                              ["error"], registry=r)
        self.bucket_creations = Counter("bucket_creation", "Buckets created", registry=r)
        self.file_uploads = Counter("file_upload", "Files uploaded", registry=r)
        self.bytes_uploaded = Counter("file_upload_byte_size", "Bytes uploaded", registry=r)
        self.bytes_downloaded = Counter("file_download_byte_size", "Bytes downloaded", registry=r)
        # every body byte a chunk PUT of an indexed session received, stored or not (a resumed upload's
        # resend cost shows here, where the stored parts count each chunk once)
        self.session_bytes_received = Counter("sagestore_session_bytes_received", "Bytes received by session "
                                              "chunk PUTs, including chunks cut off or sent again", registry=r)
        self.requests = Histogram("sagestore_http_request_duration_seconds", "HTTP request duration",
                                  ["method", "route", "status"], registry=r,
                                  buckets=(0.005, 0.02, 0.1, 0.5, 2, 10, 60, 600))
        self.reaped = Counter("sagestore_uploads_reaped", "Expired uploads cleaned up", ["what"], registry=r)
        # how completion learnt a declared sha256: hashed while the parts came ("received"), or by
        # reading the assembled object back from S3 ("read_back": parts from several instances,
        # out of order beyond the frontier's budget, a restart, or a sequential upload)
        self.sha256_verifications = Counter("sagestore_upload_sha256_verifications", "Whole-file sha256 "
                                            "computations at completion", ["how"], registry=r)
        # a new request (tus/IETF HEAD or append) found an older one still writing the upload:
        # "finished" when the older one committed within the grace, "fenced" when it was cut off
        self.takeovers = Counter("sagestore_upload_takeovers", "Older requests still writing an upload "
                                 "when a new one came", ["outcome"], registry=r)

    def observe_request(self, request: web.BaseRequest, status: int, seconds: float) -> None:
        self.requests.labels(*request_labels(request, status)).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
