"""OpenAPI fragments shared by the bucket, permission and object handlers."""
from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


def json_content(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


BAD_REQUEST = error("Bad input; the message says what is wrong")
UNAUTHORIZED = error("Anonymous caller where a user is needed, or a bad token")
FORBIDDEN = error("The caller can read the bucket but lacks the needed permission")
NOT_FOUND = error("No such bucket or file, or the caller cannot read it")

BUCKET_ID_PARAM = {"name": "id", "in": "path", "required": True, "description": "bucket UUID",
                   "schema": {"type": "string", "format": "uuid"}}

BUCKET_SUMMARY = {"type": "object", "required": ["id", "name", "owner", "type"], "properties": {
    "id": {"type": "string", "format": "uuid"}, "name": {"type": "string"}, "owner": {"type": "string"},
    "type": {"type": "string", "enum": ["model", "training-data", "profile", "none"]}}}

BUCKET = {"type": "object", "required": ["id", "name", "owner", "type", "time_created", "time_last_updated",
                                         "archived"],
          "properties": {**BUCKET_SUMMARY["properties"],
                         "time_created": {"type": "string", "format": "date-time"},
                         "time_last_updated": {"type": "string", "format": "date-time"},
                         "archived": {"type": "boolean"}}}

DELETED = {"type": "object", "required": ["deleted"],
           "properties": {"deleted": {"type": "array", "items": {"type": "string"}}}}
