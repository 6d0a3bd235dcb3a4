"""Swagger UI and the OpenAPI document in YAML, also under the OSDU File service's context path.
The UI's assets are served by sagestore from the swagger-ui-bundle package: no CDN."""
from __future__ import annotations

import re

import pytest
import yaml
from swagger_ui_bundle import swagger_ui_path


@pytest.mark.parametrize("prefix", ["", "/api/file/v2"])
async def test_the_swagger_page_loads_with_its_assets_served_by_us(client, prefix):
    response = await client.get(prefix + "/swagger", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == prefix + "/swagger-ui/index.html"
    response = await client.get(prefix + "/swagger")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    assert response.url.path == prefix + "/swagger-ui/index.html"
    references = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert "./swagger-ui-bundle.js" in references and "./swagger-ui.css" in references
    assert not [ref for ref in references if "//" in ref], "every asset must come from this server"
    for reference in references:
        asset = await client.get(f"{prefix}/swagger-ui/{reference.removeprefix('./')}")
        assert asset.status == 200, reference
        assert await asset.read() == (swagger_ui_path / reference.removeprefix("./")).read_bytes()
    # the page loads the document from ../api-docs, which is there
    document = await client.get(prefix + "/api-docs")
    assert document.status == 200
    paths = (await document.json())["paths"]
    assert {"/api/v1/shares", "/api/v1/signed/{id}/{key}", "/api/file/v2/getLocation"} <= set(paths)
    missing = await client.get(prefix + "/swagger-ui/../../etc/passwd")
    assert missing.status == 404
    assert (await client.get(prefix + "/swagger-ui/index.j2")).status == 404


@pytest.mark.parametrize("prefix", ["", "/api/file/v2"])
async def test_api_docs_yaml_is_the_same_document(client, prefix):
    as_json = await (await client.get("/api-docs")).json()
    response = await client.get(prefix + "/api-docs.yaml")
    assert response.status == 200 and response.content_type == "application/yaml"
    assert yaml.safe_load(await response.text()) == as_json
