"""JSON encoding for the hot path: orjson, with the standard library as a fallback.

Every sign-in answer and every log line is JSON, so the encoder is on the path of
every request; orjson does that work several times faster than `json`. It refuses
strings holding lone surrogates (which a client can smuggle into a path or a claim),
and those few documents are encoded by the standard library instead, escaped.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["dumps"]


def dumps(document: Any, **_ignored: Any) -> bytes:  # noqa: ANN401 -- any JSON value
    """Encode `document` as compact UTF-8 JSON; unknown objects become strings.

    Extra keyword arguments (structlog passes its own `default`) are ignored.
    """
    try:
        return orjson.dumps(document, default=str)
    except TypeError:
        return json.dumps(document, default=str, separators=(",", ":")).encode()
