"""OpenAPI fragments shared by the bucket, permission and object handlers."""
from __future__ import annotations

from typing import Any

from ..acl import GRANTEE_TYPES, PERMISSIONS

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

MAX_GRANTEE_LENGTH = 256
GRANT = {"type": "object", "additionalProperties": False, "required": ["granteeType", "grantee", "permission"],
         "properties": {
             "granteeType": {"type": "string", "enum": list(GRANTEE_TYPES)},
             "grantee": {"type": "string", "description": "user name, group name, or AllUsers (GROUP) for the public"},
             "permission": {"type": "string", "enum": list(PERMISSIONS)}}}

PERMISSIONS_PARAM = {
    "name": "permissions", "in": "query", "allowEmptyValue": True, "schema": {"type": "string"},
    "description": "present (no value, or true/1 as sage-storage-py sends 'True') selects the bucket's grants"}

GRANTEE_PARAM = {
    "name": "grantee", "in": "query", "style": "form", "explode": True,
    "schema": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z]+:[^:]+(:[A-Za-z_]+)?$"}},
    "description": "with ?permissions on DELETE, repeatable: TYPE:NAME revokes all of a grantee's permissions, "
                   "TYPE:NAME:PERMISSION one of them. The owner's grant cannot be revoked, and nobody revokes "
                   "a permission they do not hold."}
