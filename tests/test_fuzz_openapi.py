"""schemathesis against a live `sagestore serve` subprocess, from the OpenAPI document it serves
at /api-docs: every operation the document has (new routes are covered as they are documented),
as an authenticated user and anonymously. Checks: no 5xx; every status code is one the
document lists for the operation; every error (4xx) is JSON with an "error" string (the IETF
routes answer application/problem+json, which is JSON too). Every operation also gets empty
(zero-length) bodies.

SAGESTORE_FUZZ_EXAMPLES sets the examples per operation (CI: 8; the full run: 200)."""
from __future__ import annotations

import json
import os
import time

import pytest
import schemathesis
from support.server import ServerProcess
from support.data import auth
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

EXAMPLES = int(os.environ.get("SAGESTORE_FUZZ_EXAMPLES", "8"))


@pytest.fixture(scope="module")
def fuzz_server(base_settings):
    server = ServerProcess(base_settings).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    return schemathesis.openapi.from_url(fuzz_server.url + "/api-docs")


@schemathesis.check
def error_is_json(ctx, response, case) -> bool | None:
    if response.status_code < 400 or case.method.upper() == "HEAD":
        return None
    content_type = {name.lower(): value for name, value in response.headers.items()}.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type.split(";")[0].strip() in ("application/json", "application/problem+json"), \
        f"error {response.status_code} with Content-Type {content_type!r}"
    body = json.loads(response.content)
    assert isinstance(body, dict) and isinstance(body.get("error", body.get("title")), str), body
    return True


CHECKS = [not_a_server_error, status_code_conformance, error_is_json]


def fuzz(api_schema, headers: dict[str, str], examples: int) -> dict[str, int]:
    """Every operation of the document, `examples` generated requests each; failures are collected
    per operation so one run reports all of them. Returns request counts by status class."""
    counts: dict[str, int] = {}
    failures = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case):
            response = case.call_and_validate(headers=headers, checks=CHECKS, timeout=60)
            key = f"{response.status_code // 100}xx"
            counts[key] = counts.get(key, 0) + 1
        try:
            run()
        except Exception as error:  # noqa: BLE001 - reported together below
            failures.append(f"{operation.method.upper()} {operation.path}: {str(error)[:1500]}")
    print("fuzz requests by status class:", counts)
    assert not failures, "\n\n".join(failures)
    return counts


def test_fuzz_every_operation_as_a_user(api_schema):
    fuzz(api_schema, auth("alice"), EXAMPLES)


def test_fuzz_every_operation_anonymously(api_schema):
    fuzz(api_schema, {}, max(2, EXAMPLES // 4))


def test_every_operation_takes_an_empty_body(api_schema, fuzz_server):
    """Every operation of the document, with its generated path and query but an empty body
    (Content-Length: 0), with its own media type and with none, as a user and anonymously: no 5xx, every
    error is JSON, and /healthz answers within a second after each (an empty body once froze the server)."""
    import requests
    failures = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=max(2, EXAMPLES // 4), deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def run(case):
            sent = case.as_transport_kwargs(base_url=fuzz_server.url)
            for caller in (auth("alice"), {}):
                for content_type in {case.media_type, None}:
                    headers = {name: value for name, value in sent.get("headers", {}).items()
                               if name.lower() not in ("content-type", "content-length", "authorization")}
                    headers.update(caller, **({"Content-Type": content_type} if content_type else {}))
                    response = requests.request(sent["method"], sent["url"], params=sent.get("params"),
                                                headers=headers, data=b"", timeout=60)
                    assert response.status_code < 500, (response.status_code, response.text[:300])
                    if response.status_code >= 400 and sent["method"].upper() != "HEAD":
                        body = response.json()
                        assert isinstance(body.get("error", body.get("title")), str), body
                    started = time.monotonic()
                    assert requests.get(fuzz_server.url + "/healthz", timeout=1).status_code == 200
                    assert time.monotonic() - started < 1
        try:
            run()
        except Exception as error:  # noqa: BLE001 - reported together below
            failures.append(f"{operation.method.upper()} {operation.path}: {str(error)[:1500]}")
    assert not failures, "\n\n".join(failures)
