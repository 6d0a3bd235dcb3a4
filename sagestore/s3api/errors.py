"""S3's error shape: a code, a message and an HTTP status, rendered as <Error> XML.

The S3 door raises S3Error for what it decides itself; errors raised by the layers below it
(the ACL check, the engine, storage) are ApiErrors and are translated here, in one place, so a
client always gets S3's code for the SAGE API's answer (403 AccessDenied, 404 NoSuchBucket ...).
"""
from __future__ import annotations

from typing import Any

from ..errors import ApiError


class S3Error(ApiError):
    """An S3 error: `code` is S3's error code (NoSuchKey, SignatureDoesNotMatch ...)."""

    def __init__(self, code: str, message: str, status: int, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message, status=status, headers=headers, **extra)
        self.code = code


def error(code: str, message: str | None = None, **extra: Any) -> S3Error:
    """An S3Error with S3's status for `code` (and its usual wording when no message is given)."""
    status, wording = CODES[code]
    return S3Error(code, message or wording, status, **extra)


CODES: dict[str, tuple[int, str]] = {
    "AccessDenied": (403, "Access Denied"),
    "AuthorizationHeaderMalformed": (400, "The authorization header is malformed"),
    "AuthorizationQueryParametersError": (400, "The authorization query parameters are malformed"),
    "BadDigest": (400, "The Content-MD5 or checksum you specified did not match what we received."),
    "BucketAlreadyExists": (409, "The requested bucket name is not available. The bucket namespace is shared by "
                                 "all users of the system. Please select a different name and try again."),
    "BucketAlreadyOwnedByYou": (409, "Your previous request to create the named bucket succeeded and you "
                                     "already own it."),
    "BucketNotEmpty": (409, "The bucket you tried to delete is not empty"),
    "EntityTooLarge": (400, "Your proposed upload exceeds the maximum allowed size"),
    "EntityTooSmall": (400, "Your proposed upload is smaller than the minimum allowed object size."),
    "IncompleteBody": (400, "You did not provide the number of bytes specified by the Content-Length HTTP header."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "InvalidAccessKeyId": (403, "The AWS Access Key Id you provided does not exist in our records."),
    "InvalidArgument": (400, "Invalid Argument"),
    "InvalidBucketName": (400, "The specified bucket is not valid."),
    "InvalidDigest": (400, "The Content-MD5 or checksum you specified is not valid."),
    "InvalidPart": (400, "One or more of the specified parts could not be found.  The part may not have been "
                         "uploaded, or the specified entity tag may not match the part's entity tag."),
    "InvalidPartOrder": (400, "The list of parts was not in ascending order. The parts list must be specified "
                              "in order by part number."),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    "InvalidRequest": (400, "Invalid Request"),
    "KeyTooLongError": (400, "Your key is too long"),
    "MalformedXML": (400, "The XML you provided was not well-formed or did not validate against our published "
                          "schema"),
    "MetadataTooLarge": (400, "Your metadata headers exceed the maximum allowed metadata size."),
    "MethodNotAllowed": (405, "The specified method is not allowed against this resource."),
    "MissingContentLength": (411, "You must provide the Content-Length HTTP header."),
    "NoSuchBucket": (404, "The specified bucket does not exist"),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchUpload": (404, "The specified multipart upload does not exist. The upload ID may be invalid, or the "
                          "upload may have been aborted or completed."),
    "NotImplemented": (501, "A header or query you provided implies functionality that is not implemented."),
    "OperationAborted": (409, "A conflicting conditional operation is currently in progress against this "
                              "resource. Try again."),
    "PreconditionFailed": (412, "At least one of the preconditions you specified did not hold."),
    "RequestTimeout": (400, "Your socket connection to the server was not read from or written to within the "
                            "timeout period."),
    "RequestTimeTooSkewed": (403, "The difference between the request time and the server's time is too large."),
    "ServiceUnavailable": (503, "Please reduce your request rate."),
    "SignatureDoesNotMatch": (403, "The request signature we calculated does not match the signature you "
                                   "provided. Check your key and signing method."),
    "SlowDown": (503, "Please reduce your request rate."),
    "XAmzContentSHA256Mismatch": (400, "The provided 'x-amz-content-sha256' header does not match what was "
                                       "computed."),
}

# The SAGE API's statuses as S3 codes, for errors that carry no S3 code of their own
_BY_STATUS = {400: "InvalidRequest", 401: "AccessDenied", 403: "AccessDenied", 404: "NoSuchKey",
              405: "MethodNotAllowed", 408: "RequestTimeout", 409: "OperationAborted", 410: "NoSuchUpload",
              411: "MissingContentLength", 412: "PreconditionFailed", 413: "EntityTooLarge", 416: "InvalidRange",
              423: "OperationAborted", 429: "SlowDown", 460: "BadDigest", 502: "InternalError",
              503: "ServiceUnavailable"}


def translate(problem: ApiError) -> S3Error:
    """An ApiError from the layers below as the S3 error a client expects."""
    if isinstance(problem, S3Error):
        return problem
    code = problem.extra.get("code")
    if code not in CODES:
        code = _BY_STATUS.get(problem.status, "InternalError" if problem.status >= 500 else "InvalidRequest")
    status = CODES[code][0]
    headers = {k: v for k, v in problem.headers.items() if k.lower() == "retry-after"}
    return S3Error(code, problem.message, status, headers=headers)
