"""Mint credentials and identifiers that look like the ones AWS issues.

Clients and log scrubbers recognize AWS credentials by their shape (`ASIA`
plus 16 characters for temporary keys, a 40-character secret, a long base64
session token), so the stand-in issues the same shapes. They come from
`secrets`, fresh on every call, so no test can come to rely on a value.
Role ids are a hash of the role ARN instead: AWS keeps a role's id stable.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import string
from dataclasses import dataclass
from typing import Final

_ID_ALPHABET: Final = string.ascii_uppercase + string.digits
_SECRET_ALPHABET: Final = string.ascii_letters + string.digits + "+/"
_TEMPORARY_KEY_PREFIX: Final = "ASIA"
_KEY_SUFFIX_LENGTH: Final = 16
_SECRET_LENGTH: Final = 40
_TOKEN_BYTES: Final = 480
"""Gives a 640-character token, within the range AWS's tokens vary over."""

_UNIQUE_ID_SUFFIX_LENGTH: Final = 17


@dataclass(frozen=True, slots=True)
class TemporaryCredentials:
    """The secret half of an AssumeRole answer."""

    access_key_id: str
    secret_access_key: str
    session_token: str


def mint_temporary_credentials(minimum_token_size: int = 0) -> TemporaryCredentials:
    """Return new random temporary credentials.

    `minimum_token_size` is AssumeRole's MinimumSessionTokenSize: AWS pads the
    token to at least that many bytes, and so does the stand-in.
    """
    access_key_id = _TEMPORARY_KEY_PREFIX + _random_text(
        _ID_ALPHABET, _KEY_SUFFIX_LENGTH
    )
    secret_access_key = _random_text(_SECRET_ALPHABET, _SECRET_LENGTH)
    token_bytes = max(_TOKEN_BYTES, (minimum_token_size * 3 + 3) // 4)
    session_token = base64.b64encode(secrets.token_bytes(token_bytes)).decode()

    return TemporaryCredentials(access_key_id, secret_access_key, session_token)


def unique_id(prefix: str, seed: str) -> str:
    """Derive a stable IAM unique id (`AROA...`, `AIDA...`) from a resource ARN."""
    digest = hashlib.sha256(seed.encode()).digest()
    suffix = "".join(
        _ID_ALPHABET[byte % len(_ID_ALPHABET)]
        for byte in digest[:_UNIQUE_ID_SUFFIX_LENGTH]
    )

    return prefix + suffix


def _random_text(alphabet: str, length: int) -> str:
    """Return `length` characters drawn uniformly from `alphabet`."""
    return "".join(secrets.choice(alphabet) for _ in range(length))
