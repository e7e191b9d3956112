"""How an identity provider's user id becomes a Chime user id and STS names.

The Chime user id is the one name a user has on the AWS side: it is the
`AppInstanceUserId`, the last segment of the `AppInstanceUserArn`, and the value of
the `UserUUID` session tag that the role's IAM policy matches with
`${aws:PrincipalTag/UserUUID}`. Any difference between them locks the user out, so
all of them come from `chime_user_id` and nowhere else.

The mapping:

* An id that is already a valid `AppInstanceUserId` (1-64 characters of
  ``[A-Za-z0-9:_.@-]``, starting and ending with a letter or digit) and does not
  contain the marker ``..`` is used verbatim. Cognito and Azure AD UUIDs and Cognito
  identity ids (``us-east-1:<uuid>``) are in this class.
* Any other id becomes ``<readable>..<digest>``: up to 29 characters of the id with
  unsupported characters replaced by ``_``, the marker, and 32 base32 characters of
  the id's SHA-256 (160 bits).

A verbatim id never contains the marker and a mapped id always does, so the two
classes cannot meet; two mapped ids meet only if their SHA-256 digests share 160
bits. The mapping depends on nothing but the id, so every replica and every release
derives the same Chime user id.
"""

from __future__ import annotations

import base64
import hashlib
import re

__all__ = ["MARKER", "chime_user_id", "role_session_name", "source_identity"]

MARKER = ".."

_CHIME_USER_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9:_.@-]{0,62}[A-Za-z0-9])?")
_UNSUPPORTED_IN_CHIME_ID = re.compile(r"[^A-Za-z0-9:_.@-]+")
_READABLE_LENGTH = 29

# RoleSessionName and SourceIdentity: 2-64 characters of [\w+=,.@-] (ASCII \w).
_STS_NAME = re.compile(r"[A-Za-z0-9_+=,.@-]{2,64}")
_UNSUPPORTED_IN_STS_NAME = re.compile(r"[^A-Za-z0-9_+,.@-]")
# A Chime user id never contains "=", so an STS name holding it was shortened here.
# Names are for people reading CloudTrail; the session tag is what IAM matches.
_STS_NAME_SEPARATOR = "="
_STS_READABLE_LENGTH = 31


def chime_user_id(user_id: str) -> str:
    """Return the Chime user id for an identity provider's user id."""
    if MARKER not in user_id and _CHIME_USER_ID.fullmatch(user_id):
        return user_id

    readable = _UNSUPPORTED_IN_CHIME_ID.sub("_", user_id)
    readable = re.sub(r"\.{2,}", ".", readable)
    readable = readable.lstrip("_.:@-")[:_READABLE_LENGTH].rstrip(".")
    return f"{readable or 'u'}{MARKER}{_digest(user_id)}"


def role_session_name(chime_id: str) -> str:
    """Return the `RoleSessionName` for a user, readable in CloudTrail."""
    return _sts_name(f"chime_{chime_id}")


def source_identity(chime_id: str) -> str:
    """Return the `SourceIdentity`: the Chime user id itself whenever it fits."""
    return _sts_name(chime_id)


def _sts_name(name: str) -> str:
    """Replace what STS does not accept; cut with a digest what is too long."""
    valid = _UNSUPPORTED_IN_STS_NAME.sub("_", name)
    if _STS_NAME.fullmatch(valid):
        return valid

    return f"{valid[:_STS_READABLE_LENGTH]}{_STS_NAME_SEPARATOR}{_digest(name)}"


def _digest(value: str) -> str:
    # surrogatepass: a JSON string may carry a lone surrogate, which is still an id.
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()
    return base64.b32encode(digest[:20]).decode("ascii").lower()
