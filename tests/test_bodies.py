"""One model per JSON body (sagestore/handlers/bodies.py): the 400's wording, and the body's schema
in OpenAPI 3.0's dialect. The handlers' own wordings are tested through the API in their files."""
from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import ConfigDict, Field, model_validator

from sagestore.errors import BadRequest
from sagestore.handlers.bodies import BucketId, JsonBody, Says, Sha256, checked, refusal
from sagestore.openapi import body_schemas

BUCKET = "6f1ed002-ab5d-42e3-9c9f-9a3e0f2a2f11"


def _even(value: int) -> int:
    if value % 2:
        raise BadRequest(f"{value} is odd")
    return value


class Item(JsonBody):
    name: Annotated[str, Says("each item needs a name")]
    size: int = 0


class Example(JsonBody):
    model_config = ConfigDict(extra="forbid")
    unknown_fields = "no {names} here"

    bucket_id: BucketId
    kind: Annotated[Literal["a", "b"], Says("kind must be a or b", missing="kind, please")]
    count: Annotated[int, Field(ge=0), checked(_even)] = 0
    sha256: Sha256 | None = None
    label: str | None = None
    mode: Literal["x", "y"] | None = None
    items: list[Item] = []

    @model_validator(mode="after")
    def _not_both(self) -> Example:
        if self.label and self.items:
            raise refusal("a label or items, not both")
        return self


def problem(body: dict) -> str:
    with pytest.raises(BadRequest) as caught:
        Example.parse(body)
    return caught.value.message


@pytest.mark.parametrize("body, message", [
    ({"kind": "a"}, "bucket_id is required"),
    ({"bucket_id": "nope", "kind": "a"}, "bucket id 'nope' is not a valid UUID"),  # the check's own words
    ({"bucket_id": 7, "kind": "a"}, "bucket_id must be a string"),
    ({"bucket_id": BUCKET}, "kind, please"),
    ({"bucket_id": BUCKET, "kind": None}, "kind, please"),  # null counts as missing
    ({"bucket_id": BUCKET, "kind": "c"}, "kind must be a or b"),
    ({"bucket_id": BUCKET, "kind": "a", "count": "2"}, "count must be an integer"),  # strict: no coercion
    ({"bucket_id": BUCKET, "kind": "a", "count": True}, "count must be an integer"),
    ({"bucket_id": BUCKET, "kind": "a", "count": 2.0}, "count must be an integer"),
    ({"bucket_id": BUCKET, "kind": "a", "count": -2}, "count should be greater than or equal to 0"),
    ({"bucket_id": BUCKET, "kind": "a", "count": 3}, "3 is odd"),
    ({"bucket_id": BUCKET, "kind": "a", "sha256": "abc"}, "sha256 must be a string of 64 hexadecimal digits"),
    ({"bucket_id": BUCKET, "kind": "a", "items": [{"size": 1}]}, "each item needs a name"),  # a nested field's Says
    ({"bucket_id": BUCKET, "kind": "a", "items": [{"name": "x", "size": "1"}]}, "items[0].size must be an integer"),
    ({"bucket_id": BUCKET, "kind": "a", "label": "l", "items": [{"name": "x"}]}, "a label or items, not both"),
    ({"bucket_id": BUCKET, "kind": "z", "other": 1, "more": 2}, "no other, more here"),  # unknown fields first
])
def test_the_400_says_what_is_wrong(body, message):
    assert problem(body) == message


def test_a_good_body_is_cleaned():
    body = Example.parse({"bucket_id": BUCKET.upper(), "kind": "b", "count": 4, "sha256": "AB" * 32})
    assert (body.bucket_id, body.count, body.sha256) == (BUCKET, 4, "ab" * 32)
    assert Example.parse({"bucket_id": BUCKET, "kind": "a", "sha256": ""}).sha256 is None  # "" means absent


def test_schemas_are_openapi_3_0():
    refs, schemas = body_schemas((Example,))
    assert refs[Example] == {"$ref": "#/components/schemas/Example"} and "Item" in schemas
    example = schemas["Example"]
    assert example["additionalProperties"] is False and example["required"] == ["bucket_id", "kind"]
    properties = example["properties"]
    assert properties["bucket_id"] == {"type": "string", "format": "uuid"}
    assert properties["kind"] == {"type": "string", "enum": ["a", "b"]}
    assert properties["count"] == {"type": "integer", "minimum": 0, "default": 0}
    assert properties["label"] == {"type": "string", "nullable": True, "default": None}
    assert properties["mode"] == {"type": "string", "enum": ["x", "y", None], "nullable": True, "default": None}
    assert properties["sha256"]["nullable"] is True and "anyOf" not in properties["sha256"]
    assert properties["items"]["items"] == {"$ref": "#/components/schemas/Item"}
    assert not any("title" in schema for schema in properties.values())
