"""The JSON value types the admin endpoints and the Chime protocol exchange."""

from __future__ import annotations

from typing import TypeAlias

JsonValue: TypeAlias = (
    str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None
)
JsonObject: TypeAlias = dict[str, JsonValue]
