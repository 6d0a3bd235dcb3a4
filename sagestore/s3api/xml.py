"""S3's XML: documents built from nested tuples, and the request bodies S3 clients send, parsed
with defusedxml (no entities, no external references)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable
from xml.etree.ElementTree import Element, SubElement, tostring

import defusedxml.ElementTree as safe_xml
from defusedxml import DefusedXmlException

from .errors import error

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
CONTENT_TYPE = "application/xml"

# A document is (tag, children) where each child is (tag, text or children); None values are left out.
Node = tuple[str, Any]


def _fill(parent: Element, children: Iterable[Node]) -> None:
    for tag, value in children:
        if value is None:
            continue
        child = SubElement(parent, tag)
        if isinstance(value, (list, tuple)) and not isinstance(value, str):
            _fill(child, value)
        elif isinstance(value, bool):
            child.text = "true" if value else "false"
        elif isinstance(value, datetime):
            child.text = timestamp(value)
        else:
            child.text = str(value)


def render(tag: str, children: Iterable[Node], *, namespace: bool = True) -> bytes:
    root = Element(tag, {"xmlns": NAMESPACE} if namespace else {})
    _fill(root, children)
    return tostring(root, encoding="utf-8", xml_declaration=True)


def timestamp(value: datetime) -> str:
    """S3's ISO 8601 with milliseconds: 2025-01-02T03:04:05.000Z."""
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def owner(user: str) -> list[Node]:
    return [("ID", user), ("DisplayName", user)]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse(body: bytes, root: str) -> Element:
    """The document's root element, which must be `root`; MalformedXML otherwise."""
    try:
        element = safe_xml.fromstring(body)
    except (DefusedXmlException, SyntaxError, ValueError):
        raise error("MalformedXML") from None
    if _local(element.tag) != root:
        raise error("MalformedXML", f"the document's root must be {root}")
    return element


def children(element: Element, tag: str) -> list[Element]:
    return [child for child in element if _local(child.tag) == tag]


def text(element: Element, tag: str) -> str | None:
    found = children(element, tag)
    if not found:
        return None
    return found[0].text or ""
