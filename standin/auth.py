"""Read the SigV4 signature every AWS request carries, without verifying it.

The stand-in has no secrets to check signatures against, but a caller that
forgets to sign (an anonymous client, a credentials chain that found nothing)
must fail here as it would against AWS, not pass silently. So the request
must carry a well-formed `AWS4-HMAC-SHA256` Authorization header, or the
presigned-URL query fields; the access key id it names is returned because
GetCallerIdentity answers for it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Mapping

ALGORITHM: Final = "AWS4-HMAC-SHA256"
_REQUIRED_FIELDS: Final = ("Credential", "SignedHeaders", "Signature")
_SCOPE_TERMINATOR: Final = "aws4_request"
_SCOPE_PARTS: Final = 5


class SignatureProblem(enum.Enum):
    """Why a request's signature was refused; each maps to an AWS error code."""

    MISSING = "missing"
    INCOMPLETE = "incomplete"


@dataclass(frozen=True, slots=True)
class SignedCredential:
    """The credential scope a request was signed for."""

    access_key_id: str
    date: str
    region: str
    service: str


@dataclass(frozen=True, slots=True)
class SignatureRejection:
    """A refused signature and the detail AWS would give for it."""

    problem: SignatureProblem
    detail: str


def read_signature(
    headers: Mapping[str, str], query: Mapping[str, str]
) -> SignedCredential | SignatureRejection:
    """Return the signing credential, or why the request is not SigV4-signed."""
    authorization = headers.get("Authorization")

    if authorization is not None:
        return _read_header(authorization, headers)

    if "X-Amz-Algorithm" in query:
        return _read_presigned(query)

    return SignatureRejection(
        SignatureProblem.MISSING, "Request is missing Authentication Token"
    )


def _read_header(
    authorization: str, headers: Mapping[str, str]
) -> SignedCredential | SignatureRejection:
    """Parse `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`."""
    algorithm, _, rest = authorization.strip().partition(" ")

    if algorithm != ALGORITHM:
        return SignatureRejection(
            SignatureProblem.INCOMPLETE,
            f"Unsupported Authorization algorithm '{algorithm}'; use {ALGORITHM}",
        )

    fields = dict(
        part.strip().partition("=")[::2] for part in rest.split(",") if "=" in part
    )
    missing = [name for name in _REQUIRED_FIELDS if not fields.get(name)]

    if missing:
        needs = " ".join(
            f"Authorization header requires '{name}' parameter." for name in missing
        )
        return SignatureRejection(SignatureProblem.INCOMPLETE, needs)

    if "X-Amz-Date" not in headers and "Date" not in headers:
        return SignatureRejection(
            SignatureProblem.INCOMPLETE,
            "Authorization header requires existence of either a 'X-Amz-Date' "
            "or a 'Date' header.",
        )

    return _read_scope(fields["Credential"])


def _read_presigned(query: Mapping[str, str]) -> SignedCredential | SignatureRejection:
    """Parse the `X-Amz-*` query fields of a presigned request."""
    if query.get("X-Amz-Algorithm") != ALGORITHM:
        return SignatureRejection(
            SignatureProblem.INCOMPLETE, f"X-Amz-Algorithm must be {ALGORITHM}"
        )

    names = ("X-Amz-Credential", "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Date")
    missing = [name for name in names if not query.get(name)]

    if missing:
        return SignatureRejection(
            SignatureProblem.INCOMPLETE,
            "Presigned request requires " + ", ".join(missing),
        )

    return _read_scope(query["X-Amz-Credential"])


def _read_scope(credential: str) -> SignedCredential | SignatureRejection:
    """Split `AKID/yyyymmdd/region/service/aws4_request`."""
    parts = credential.split("/")

    if len(parts) != _SCOPE_PARTS or parts[-1] != _SCOPE_TERMINATOR or not all(parts):
        return SignatureRejection(
            SignatureProblem.INCOMPLETE,
            "Credential should be scoped to a valid region and service: "
            f"'{credential}'",
        )

    access_key_id, date, region, service, _ = parts

    return SignedCredential(access_key_id, date, region, service)
