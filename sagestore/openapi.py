"""The OpenAPI 3 document served at /api-docs. Every route the app serves must be
described here; tests/test_openapi.py checks that against the router."""
from __future__ import annotations

from typing import Any

from aiohttp import web

ERROR = {"$ref": "#/components/responses/Error"}


def _op(summary: str, responses: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": responses or {"200": {"description": "OK"}}, **extra}


# path -> {method: operation}. Handlers' modules add their paths via PATHS.update(...) at import.
PATHS: dict[str, dict[str, Any]] = {
    "/": {"get": _op("Service document")},
    "/api/v1/": {"get": _op("API version document (also names the server's version)")},
    "/healthz": {"get": _op("Liveness: the process answers")},
    "/readyz": {"get": _op("Readiness: PostgreSQL and S3 answer", {"200": {"description": "ready"},
                                                                    "503": ERROR})},
    "/metrics": {"get": _op("Prometheus metrics")},
    "/api-docs": {"get": _op("This OpenAPI document")},
}


def operation(summary: str, responses: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Shorthand for handler modules describing their operations."""
    return _op(summary, responses, **extra)


def openapi_document(app: web.Application | None = None) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "sagestore", "version": "1",
                 "description": "SAGE object store API with resumable uploads."},
        "components": {
            "securitySchemes": {
                "sage": {"type": "apiKey", "in": "header", "name": "Authorization",
                         "description": "'sage <token>' or 'Bearer <token>'"},
            },
            "responses": {"Error": {"description": "Error", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}},
        },
        "security": [{"sage": []}, {}],
        "paths": PATHS,
    }
