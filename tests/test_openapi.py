"""The OpenAPI document describes exactly the routes the app serves, and is valid OpenAPI 3."""
from openapi_spec_validator import validate

from sagestore.app import create_app
from sagestore.openapi import openapi_document

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def served_routes(app) -> set[tuple[str, str]]:
    return {(route.resource.canonical, route.method.lower()) for route in app.router.routes()}


def documented_operations(document) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item if method in HTTP_METHODS}


def test_every_route_is_documented_with_its_methods(settings):
    app = create_app(settings)
    documented = documented_operations(openapi_document(app))
    missing = []
    for path, method in sorted(served_routes(app)):
        if method == "*":  # any method: at least one must be described
            ok = any(doc_path == path for doc_path, _ in documented)
        elif method == "head":  # aiohttp adds HEAD to every GET route; a GET description covers it
            ok = (path, "head") in documented or (path, "get") in documented
        else:
            ok = (path, method) in documented
        if not ok:
            missing.append(f"{method.upper()} {path}")
    assert not missing, f"routes missing from the OpenAPI document: {missing}"


def test_nothing_is_documented_that_is_not_served(settings):
    app = create_app(settings)
    served = served_routes(app)
    phantom = [f"{method.upper()} {path}" for path, method in sorted(documented_operations(openapi_document(app)))
               if (path, method) not in served and (path, "*") not in served]
    assert not phantom, f"documented but not served: {phantom}"


def test_every_operation_has_responses_and_declares_its_path_parameters(settings):
    document = openapi_document(create_app(settings))
    for path, item in document["paths"].items():
        names = {segment[1:-1] for segment in path.split("/") if segment.startswith("{")}
        for method, operation in item.items():
            assert operation.get("summary") and operation.get("responses"), (method, path)
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (method, path)


def test_document_is_valid_openapi(settings):
    validate(openapi_document(create_app(settings)))


async def test_document_is_served_at_api_docs(client):
    response = await client.get("/api-docs")
    assert response.status == 200 and response.content_type == "application/json"
    document = await response.json()
    assert document["openapi"].startswith("3.")
    assert {"/api/v1/objects", "/api/v1/objects/{id}", "/api/v1/objects/{id}/{key}"} <= set(document["paths"])
