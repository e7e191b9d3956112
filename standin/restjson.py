"""The AWS rest-json protocol: routes, request members and JSON answers from the model.

A rest-json operation spreads its input over the URI (`{appInstanceUserArn}`,
percent-encoded by botocore), headers, the query string and a JSON body; the
model's `location` traits say which member lives where. Reading and writing
by the model keeps the stand-in's routes and field names exactly the ones
botocore uses. Errors carry their code in `x-amzn-ErrorType`, which botocore
reads before the body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Final

from aiohttp import web
from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

if TYPE_CHECKING:
    from standin.errors import ServiceError
    from standin.jsontypes import JsonValue

CONTENT_TYPE: Final = "application/json"
ERROR_TYPE_HEADER: Final = "x-amzn-ErrorType"
_GREEDY_LABEL: Final = re.compile(r"\{(\w+)\+\}")


class MalformedRequestError(ValueError):
    """A body that is not the JSON object rest-json requires."""


def route_path(operation: OperationModel) -> str:
    """Turn the model's request URI into an aiohttp route path.

    The syntaxes agree on `{label}`; a greedy `{label+}` becomes a pattern
    that spans slashes.
    """
    request_uri = str(operation.http["requestUri"]).split("?", 1)[0]

    return _GREEDY_LABEL.sub(r"{\1:.+}", request_uri)


async def decode_request(
    operation: OperationModel, request: web.Request
) -> dict[str, object]:
    """Gather the input members from wherever the model places them."""
    shape = operation.input_shape
    if shape is None:
        return {}

    body = await _read_body(request)
    decoded: dict[str, object] = {}

    for name, member in shape.members.items():
        value = _member_value(name, member, request, body)
        if value is not None:
            decoded[name] = value

    return decoded


def render_result(
    operation: OperationModel, result: Mapping[str, object]
) -> web.Response:
    """Write the output members as JSON, with the model's success status."""
    shape = operation.output_shape
    document = _to_json(shape, result) if shape is not None else {}
    status = int(operation.http.get("responseCode", 200))

    return web.Response(
        status=status,
        text=json.dumps(document, separators=(",", ":")),
        content_type=CONTENT_TYPE,
    )


def render_error(error: ServiceError, body_code: str) -> web.Response:
    """Write an error: its shape name in `x-amzn-ErrorType`, a `Code` in the body."""
    body = {"Code": body_code, "Message": error.message}

    return web.Response(
        status=error.status,
        text=json.dumps(body, separators=(",", ":")),
        content_type=CONTENT_TYPE,
        headers={ERROR_TYPE_HEADER: error.code},
    )


async def _read_body(request: web.Request) -> dict[str, object]:
    """Parse the JSON body; an empty body is an empty object, as AWS reads it."""
    raw = await request.read()
    if not raw.strip():
        return {}

    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as error:
        raise MalformedRequestError(
            f"The request body is not valid JSON: {error}"
        ) from None

    if not isinstance(document, dict):
        raise MalformedRequestError("The request body must be a JSON object")

    return document


def _member_value(
    name: str, member: Shape, request: web.Request, body: Mapping[str, object]
) -> object | None:
    """Read one input member from its location (URI, header, query or body)."""
    location = member.serialization.get("location")
    wire_name = member.serialization.get("name", name)

    if location == "uri":
        return request.match_info.get(wire_name)

    if location == "header":
        return request.headers.get(wire_name)

    if location == "querystring":
        if isinstance(member, ListShape):
            return request.query.getall(wire_name, None)
        return request.query.get(wire_name)

    return body.get(member.serialization.get("jsonName", name))


def _to_json(shape: Shape, value: object) -> JsonValue:
    """Convert a result value to JSON as botocore expects it (epoch timestamps)."""
    if isinstance(shape, StructureShape) and isinstance(value, Mapping):
        return {
            member.serialization.get("jsonName", name): _to_json(member, value[name])
            for name, member in shape.members.items()
            if value.get(name) is not None
        }

    if isinstance(shape, ListShape) and isinstance(value, list | tuple):
        return [_to_json(shape.member, item) for item in value]

    if isinstance(shape, MapShape) and isinstance(value, Mapping):
        return {str(key): _to_json(shape.value, item) for key, item in value.items()}

    if isinstance(value, datetime):
        return round(value.timestamp(), 3)

    if isinstance(value, str | int | float | bool):
        return value

    return str(value)
