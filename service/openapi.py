"""The OpenAPI 3.1 description of the HTTP API, served at `GET /openapi.json`.

It is written out here rather than generated: the document is the contract front
ends rely on, and the test suite holds the live service to it with schemathesis.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

__all__ = ["openapi_document"]

_PROBLEM: Final = {"$ref": "#/components/schemas/Problem"}
_PROBLEM_CONTENT: Final = {"application/problem+json": {"schema": _PROBLEM}}
_REQUEST_ID_HEADER: Final = {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}}


def openapi_document() -> dict[str, Any]:
    """Return the API's OpenAPI document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Chime sign-in",
            "version": _version(),
            "description": (
                "Exchanges an identity provider's JWT for an Amazon Chime SDK "
                "AppInstanceUser and short-lived AWS credentials scoped to it."
            ),
        },
        "paths": {
            "/v1/sign-in": {"post": _sign_in()},
            "/healthz": {"get": _probe("Liveness: the process answers.")},
            "/readyz": {"get": _readiness()},
            "/metrics": {"get": _metrics()},
            "/openapi.json": {"get": _self_description()},
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": _schemas(),
            "headers": _headers(),
            "responses": _problem_responses(),
        },
    }


def _sign_in() -> dict[str, Any]:
    return {
        "operationId": "signIn",
        "summary": "Exchange a JWT for Chime messaging credentials.",
        "security": [{"bearer": []}],
        "responses": {
            "200": {
                "description": "The user's Chime identity and credentials.",
                "headers": {
                    **_REQUEST_ID_HEADER,
                    "Cache-Control": {"schema": {"const": "no-store"}},
                },
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/SignIn"}
                    }
                },
            },
            "400": {"$ref": "#/components/responses/InvalidRequest"},
            "401": {"$ref": "#/components/responses/Unauthorized"},
            "403": {"$ref": "#/components/responses/InsufficientScope"},
            "502": {"$ref": "#/components/responses/AwsMisconfigured"},
            "503": {"$ref": "#/components/responses/Unavailable"},
            "default": {"$ref": "#/components/responses/Problem"},
        },
    }


def _probe(summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "responses": {
            "200": {
                "description": "Ok.",
                "headers": _REQUEST_ID_HEADER,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/Status"}
                    }
                },
            },
            "default": {"$ref": "#/components/responses/Problem"},
        },
    }


def _readiness() -> dict[str, Any]:
    operation = _probe("Readiness: keys loaded, AWS clients open, not shutting down.")
    operation["responses"]["503"] = {
        "description": "Not ready; `detail` says why.",
        "headers": _REQUEST_ID_HEADER,
        "content": _PROBLEM_CONTENT,
    }
    return operation


def _metrics() -> dict[str, Any]:
    return {
        "summary": "Prometheus metrics in the text exposition format.",
        "responses": {
            "200": {
                "description": "The metrics.",
                "headers": _REQUEST_ID_HEADER,
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "default": {"$ref": "#/components/responses/Problem"},
        },
    }


def _self_description() -> dict[str, Any]:
    return {
        "summary": "This document.",
        "responses": {
            "200": {
                "description": "The OpenAPI document.",
                "headers": _REQUEST_ID_HEADER,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "default": {"$ref": "#/components/responses/Problem"},
        },
    }


def _schemas() -> dict[str, Any]:
    text = {"type": "string", "minLength": 1}
    return {
        "SignIn": {
            "type": "object",
            "required": [
                "ChimeAppInstanceUserArn",
                "ChimeUserId",
                "ChimeCredentials",
                "ChimeDisplayName",
            ],
            "additionalProperties": False,
            "properties": {
                "ChimeAppInstanceUserArn": {
                    "type": "string",
                    "pattern": r"^arn:aws[a-z-]*:chime:[a-z0-9-]+:\d{12}:app-instance/"
                    r"[A-Za-z0-9-]+/user/[A-Za-z0-9:_.@-]{1,64}$",
                },
                "ChimeUserId": {
                    "type": "string",
                    "pattern": r"^[A-Za-z0-9]([A-Za-z0-9:_.@-]{0,62}[A-Za-z0-9])?$",
                },
                "ChimeCredentials": {
                    "type": "object",
                    "required": [
                        "AccessKeyId",
                        "SecretAccessKey",
                        "SessionToken",
                        "Expiration",
                    ],
                    "additionalProperties": False,
                    "properties": {
                        "AccessKeyId": text,
                        "SecretAccessKey": text,
                        "SessionToken": text,
                        "Expiration": {
                            "type": "string",
                            "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$",
                        },
                    },
                },
                "ChimeDisplayName": {"type": "string", "minLength": 1},
            },
        },
        "Status": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string"},
                "redis": {
                    "description": "With Redis configured: its breaker's state.",
                    "enum": ["closed", "open", "half_open"],
                },
            },
        },
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "required": ["type", "title", "status"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "code": {
                    "type": "string",
                    "description": "The RFC 6750 error code, for token failures.",
                },
            },
        },
    }


def _headers() -> dict[str, Any]:
    return {
        "RequestId": {
            "description": "The request's id: the caller's X-Request-ID or a new one.",
            "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$"},
        },
        "WwwAuthenticate": {
            "description": "The RFC 6750 Bearer challenge.",
            "required": True,
            "schema": {"type": "string", "pattern": "^Bearer realm="},
        },
        "RetryAfter": {
            "description": "Seconds to wait before trying again.",
            "required": True,
            "schema": {"type": "string", "pattern": r"^\d+$"},
        },
    }


def _problem_responses() -> dict[str, Any]:
    challenge = {"$ref": "#/components/headers/WwwAuthenticate"}
    retry = {"$ref": "#/components/headers/RetryAfter"}

    def problem(description: str, **headers: dict[str, str]) -> dict[str, Any]:
        return {
            "description": description,
            "headers": {**_REQUEST_ID_HEADER, **headers},
            "content": _PROBLEM_CONTENT,
        }

    return {
        "InvalidRequest": problem(
            "The Authorization header is malformed, repeated or too large, or a "
            "token was sent in the query string.",
            **{"WWW-Authenticate": challenge},
        ),
        "Unauthorized": problem(
            "No bearer token, or an invalid one.", **{"WWW-Authenticate": challenge}
        ),
        "InsufficientScope": problem(
            "The token lacks a claim the service requires.",
            **{"WWW-Authenticate": challenge},
        ),
        "AwsMisconfigured": problem("AWS refused the service's configuration."),
        "Unavailable": problem(
            "AWS or the identity provider is unavailable; retry later.",
            **{"Retry-After": retry},
        ),
        "Problem": problem("Any other refusal, as problem details."),
    }


def _version() -> str:
    try:
        return version("chime-sign-in")
    except PackageNotFoundError:
        return "0+unknown"
