"""The AWS query protocol: form fields in, XML out, both driven by the model.

The query protocol flattens a request into form fields: `RoleArn=...`,
`Tags.member.1.Key=...`, `PolicyArns.member.2.arn=...`. Decoding walks the
operation's input shape, so every member the model knows is read the way
botocore's serializer wrote it, and unknown fields are ignored as AWS ignores
them. Scalars that do not parse (an integer field holding `abc`) are kept as
the raw string so validation reports them as the wrong type.

Answers go the other way: the result is written as XML in the service's
namespace by walking the output shape, and errors as `<ErrorResponse>`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

if TYPE_CHECKING:
    from standin.errors import ServiceError

_INTEGER_TYPES: Final = frozenset({"integer", "long"})
_INTEGER_TEXT: Final = re.compile(r"-?[0-9]+")


def decode_query(shape: StructureShape, params: Mapping[str, str]) -> dict[str, object]:
    """Decode the fields of a whole request for the operation's input shape."""
    return _decode_structure(shape, params, "")


def _decode(shape: Shape, params: Mapping[str, str], key: str) -> object | None:
    """Decode the value stored under `key`, or None when the request lacks it."""
    if isinstance(shape, StructureShape):
        members = _decode_structure(shape, params, key + ".")
        return members or None

    if isinstance(shape, ListShape):
        return _decode_list(shape, params, key)

    if isinstance(shape, MapShape):
        return _decode_map(shape, params, key)

    raw = params.get(key)
    if raw is None:
        return None

    return _decode_scalar(shape, raw)


def _decode_structure(
    shape: StructureShape, params: Mapping[str, str], prefix: str
) -> dict[str, object]:
    """Decode each member from `<prefix><SerializedName>`."""
    decoded: dict[str, object] = {}

    for name, member in shape.members.items():
        serialized_name = member.serialization.get("name", name)
        value = _decode(member, params, prefix + serialized_name)

        if value is not None:
            decoded[name] = value

    return decoded


def _decode_list(
    shape: ListShape, params: Mapping[str, str], key: str
) -> list[object] | None:
    """Decode `<key>.member.<n>` elements in index order; `<key>=` is empty."""
    element_prefix = key if shape.serialization.get("flattened") else key + ".member"
    positions = _positions(params, element_prefix)

    if not positions:
        return [] if params.get(key) == "" else None

    elements: list[object] = []
    for position in positions:
        element = _decode(shape.member, params, f"{element_prefix}.{position}")
        if element is not None:
            elements.append(element)

    return elements


def _decode_map(
    shape: MapShape, params: Mapping[str, str], key: str
) -> dict[object, object] | None:
    """Decode `<key>.entry.<n>.key` / `.value` pairs."""
    entry_prefix = key if shape.serialization.get("flattened") else key + ".entry"
    positions = _positions(params, entry_prefix)

    if not positions:
        return None

    key_name = shape.key.serialization.get("name", "key")
    value_name = shape.value.serialization.get("name", "value")
    decoded: dict[object, object] = {}

    for position in positions:
        entry = f"{entry_prefix}.{position}"
        entry_key = _decode(shape.key, params, f"{entry}.{key_name}")
        entry_value = _decode(shape.value, params, f"{entry}.{value_name}")
        if entry_key is not None:
            decoded[entry_key] = entry_value

    return decoded


def _positions(params: Mapping[str, str], prefix: str) -> list[int]:
    """Return the 1-based element indices present under `prefix`, ascending."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)(?:\.|$)")
    found = {int(match.group(1)) for name in params if (match := pattern.match(name))}

    return sorted(found)


def _decode_scalar(shape: Shape, raw: str) -> object:
    """Convert a field's text to the model's scalar type where it parses."""
    if shape.type_name in _INTEGER_TYPES and _INTEGER_TEXT.fullmatch(raw):
        return int(raw)

    if shape.type_name == "boolean" and raw in {"true", "false"}:
        return raw == "true"

    return raw


def render_result(
    operation: OperationModel, result: Mapping[str, object], request_id: str
) -> bytes:
    """Write `<OpResponse><OpResult>...</OpResult><ResponseMetadata>` for `result`.

    Members are written in model order and only when present, from the
    operation's output shape, so the element names cannot drift from what
    botocore's parser looks for.
    """
    namespace = operation.service_model.metadata["xmlNamespace"]
    root = ET.Element(f"{operation.name}Response", xmlns=namespace)
    output = operation.output_shape

    if output is not None:
        wrapper_name = output.serialization.get(
            "resultWrapper", f"{operation.name}Result"
        )
        _append(root, wrapper_name, output, result)

    metadata = ET.SubElement(root, "ResponseMetadata")
    ET.SubElement(metadata, "RequestId").text = request_id

    return ET.tostring(root, encoding=None)


def render_error(namespace: str, error: ServiceError, request_id: str) -> bytes:
    """Write the query protocol's `<ErrorResponse>` for `error`."""
    root = ET.Element("ErrorResponse", xmlns=namespace)
    details = ET.SubElement(root, "Error")
    ET.SubElement(details, "Type").text = "Sender" if error.sender_fault else "Receiver"
    ET.SubElement(details, "Code").text = error.code
    ET.SubElement(details, "Message").text = error.message
    ET.SubElement(root, "RequestId").text = request_id

    return ET.tostring(root, encoding=None)


def _append(parent: ET.Element, name: str, shape: Shape, value: object) -> None:
    """Append `value` under `parent` as the element `name`, typed by `shape`."""
    element = ET.SubElement(parent, name)

    if isinstance(shape, StructureShape) and isinstance(value, Mapping):
        for member_name, member in shape.members.items():
            member_value = value.get(member_name)
            if member_value is not None:
                serialized_name = member.serialization.get("name", member_name)
                _append(element, serialized_name, member, member_value)
        return

    if isinstance(shape, ListShape) and isinstance(value, list | tuple):
        item_name = shape.member.serialization.get("name", "member")
        for item in value:
            _append(element, item_name, shape.member, item)
        return

    element.text = _scalar_text(shape, value)


def _scalar_text(shape: Shape, value: object) -> str:
    """Format a scalar as the query protocol does (ISO-8601 UTC timestamps)."""
    if shape.type_name == "timestamp" and isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    if shape.type_name == "boolean" and isinstance(value, bool):
        return "true" if value else "false"

    return str(value)
