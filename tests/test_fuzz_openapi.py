"""schemathesis against a live `sagestore serve` subprocess, from the OpenAPI document it serves
at /api-docs: every operation the document has (new routes are covered as they are documented),
as an authenticated user and anonymously. Checks: no 5xx; every status code is one the
document lists for the operation; every error (4xx) is JSON with an "error" string (the IETF
routes answer application/problem+json, which is JSON too).

SAGESTORE_FUZZ_EXAMPLES sets the examples per operation (CI: 8; the full run: 200)."""
from __future__ import annotations

import json
import os

import pytest
import schemathesis
from conftest import ServerProcess, auth
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
