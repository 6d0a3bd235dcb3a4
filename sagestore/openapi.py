"""The OpenAPI 3 document served at /api-docs, built from the app's router.

Each handler declares its own operation with `@documented(...)` (an attribute on the handler
function), and a JSON request body by the model that also validates it (handlers/bodies.py):
`openapi_document(app)` walks the routes the app serves, takes each handler's declaration and
turns the body models into `components.schemas`. tests/test_openapi.py checks that every served
route is described and nothing else is.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

ERROR = {"$ref": "#/components/responses/Error"}
OPENAPI = "__openapi__"  # the handler attribute: {method or "*": Operation}
ANY_METHOD = "*"
HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])


@dataclass(frozen=True)
class Operation:
    """One documented operation; `body` is the JSON body's model (it validates the body too)."""
    summary: str
    responses: dict[str, Any] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def render(self, refs: dict[type[BaseModel], dict[str, str]]) -> dict[str, Any]:
        rendered = {"summary": self.summary, "responses": self.responses or {"200": {"description": "OK"}},
                    **self.extra}
        if self.body is not None:
            rendered["requestBody"] = {"required": self.body_required,
                                       "content": {"application/json": {"schema": refs[self.body]}}}
        return rendered


def documented(summary: str, responses: dict[str, Any] | None = None, *, body: type[BaseModel] | None = None,
               body_required: bool = True, method: str = ANY_METHOD,
               **extra: Any) -> Callable[[HandlerT], HandlerT]:
    """Declare the handler's operation in the OpenAPI document: for every method it is routed
    under, or (`method=`) for one of them, e.g. the HEAD that aiohttp adds to a GET route.
    `extra` goes into the operation as is (parameters, tags, security, a non-JSON requestBody)."""
    def mark(handler: HandlerT) -> HandlerT:
        declared = dict(getattr(handler, OPENAPI, {}))
        declared[method.lower()] = Operation(summary, responses, body, body_required, extra)
        setattr(handler, OPENAPI, declared)
        return handler
    return mark


class OpenApi30Schema(GenerateJsonSchema):
    """pydantic's JSON Schema (2020-12) in OpenAPI 3.0's dialect: `nullable` instead of a
    null type, no `default: null` where null is not allowed, and no per-field titles."""

    def nullable_schema(self, schema: Any) -> dict[str, Any]:
        inner = self.generate_inner(schema["schema"])
        if "$ref" in inner:  # 3.0 ignores siblings of $ref
            return {"allOf": [inner], "nullable": True}
        if "enum" in inner:  # 3.0.3: an enum lists null too, or null is not allowed
            inner = {**inner, "enum": [*inner["enum"], None]}
        return {**inner, "nullable": True}

    def default_schema(self, schema: Any) -> dict[str, Any]:
        # an optional field that may not be null (left out means "no change"): no "default: null"
        generated = super().default_schema(schema)
        if "default" in generated and generated["default"] is None and not generated.get("nullable"):
            del generated["default"]
        return generated

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


@functools.cache  # the models of an app's routes do not change; generating their schemas takes ~10 ms
def body_schemas(models: tuple[type[BaseModel], ...]) -> tuple[dict[type[BaseModel], dict[str, str]], dict[str, Any]]:
    """({model: its $ref}, components.schemas) for these body models and the models they nest."""
    if not models:
        return {}, {}
    refs, definitions = models_json_schema([(model, "validation") for model in models],
                                           ref_template="#/components/schemas/{model}",
                                           schema_generator=OpenApi30Schema)
    return {model: ref for (model, _), ref in refs.items()}, definitions.get("$defs", {})


def declared_operations(app: web.Application) -> dict[str, dict[str, Operation]]:
    """path -> {method: Operation}, from the handlers of the routes the app serves. A HEAD that
    aiohttp added to a GET route is described only when its handler declares "head" itself."""
    get_handlers = {(route.resource.canonical, route.handler) for route in app.router.routes()
                    if route.method == "GET" and route.resource is not None}
    paths: dict[str, dict[str, Operation]] = {}
    for route in app.router.routes():
        declared: dict[str, Operation] = getattr(route.handler, OPENAPI, {})
        if not declared or route.resource is None:
            continue
        path, method = route.resource.canonical, route.method.lower()
        item = paths.setdefault(path, {})
        if method == ANY_METHOD:  # one handler for every method: what it declares, GET by default
            for name, operation in declared.items():
                item["get" if name == ANY_METHOD else name] = operation
        elif method in declared:
            item[method] = declared[method]
        elif ANY_METHOD in declared and not (method == "head" and (path, route.handler) in get_handlers):
            item[method] = declared[ANY_METHOD]
    return {path: item for path, item in paths.items() if item}


def openapi_document(app: web.Application) -> dict[str, Any]:
    operations = declared_operations(app)
    models = sorted({operation.body for item in operations.values() for operation in item.values()
                     if operation.body is not None}, key=lambda model: model.__qualname__)
    refs, schemas = body_schemas(tuple(models))
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
            "schemas": schemas,
        },
        "security": [{"sage": []}, {}],
        "paths": {path: {method: operation.render(refs) for method, operation in item.items()}
                  for path, item in sorted(operations.items())},
    }
