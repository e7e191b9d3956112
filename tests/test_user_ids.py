"""The id mapping: valid for Chime and STS, deterministic, and collision-free."""

from __future__ import annotations

import re
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from service.user_ids import (
    MARKER,
    chime_user_id,
    role_session_name,
    source_identity,
)

_APP_INSTANCE_USER_ID = re.compile(r"[A-Za-z0-9]([A-Za-z0-9:_.@-]{0,62}[A-Za-z0-9])?")
# STS session tag values: letters, white space, numbers and _ . : / = + - @, up to 256.
_TAG_VALUE = re.compile(r"[\w\s.:/=+@-]{0,256}")
_STS_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)

user_ids = st.text(min_size=1, max_size=300) | st.from_regex(
    r"[A-Za-z0-9][A-Za-z0-9:_.@|+-]{0,80}", fullmatch=True
)


@given(user_ids)
def test_chime_user_id_is_valid_everywhere_it_is_used(user_id: str) -> None:
    """Every mapped id fits AppInstanceUserId, the tag value and both STS names."""
    chime_id = chime_user_id(user_id)

    assert _APP_INSTANCE_USER_ID.fullmatch(chime_id)
    assert _TAG_VALUE.fullmatch(chime_id)
    assert _STS_NAME.fullmatch(role_session_name(chime_id))
    assert _STS_NAME.fullmatch(source_identity(chime_id))
    assert chime_user_id(user_id) == chime_id


@settings(max_examples=300)
@given(st.lists(user_ids, min_size=2, max_size=60, unique=True))
def test_chime_user_id_never_maps_two_ids_to_one(ids: list[str]) -> None:
    """Distinct user ids always get distinct Chime user ids."""
    mapped = [chime_user_id(user_id) for user_id in ids]

    assert len(set(mapped)) == len(ids)


@given(user_ids)
def test_chime_user_id_is_verbatim_exactly_when_valid_and_unmarked(
    user_id: str,
) -> None:
    """Valid ids pass through unchanged; every rewritten id carries the marker."""
    chime_id = chime_user_id(user_id)

    if _APP_INSTANCE_USER_ID.fullmatch(user_id) and MARKER not in user_id:
        assert chime_id == user_id
    else:
        assert MARKER in chime_id


def test_chime_user_id_keeps_identity_provider_uuids() -> None:
    """Cognito and Azure UUIDs and Cognito identity ids are used as they are."""
    cognito_sub = str(uuid.uuid4())
    identity_id = f"us-east-1:{uuid.uuid4()}"

    assert chime_user_id(cognito_sub) == cognito_sub
    assert chime_user_id(identity_id) == identity_id


def test_chime_user_id_rewrites_ids_that_carry_the_marker() -> None:
    """An id that looks like a mapped one is mapped too, so the classes never meet."""
    lookalike = chime_user_id("auth0|abc")

    assert chime_user_id(lookalike) != lookalike
    assert MARKER in chime_user_id(lookalike)


def test_chime_user_id_handles_awkward_ids() -> None:
    """Emails with +, unicode, lone surrogates and 300 characters all map."""
    awkward = ["bob+chat@example.com", "Zoë Ünïcode", "\ud800", "x" * 300, "-a-"]

    mapped = [chime_user_id(user_id) for user_id in awkward]

    assert all(_APP_INSTANCE_USER_ID.fullmatch(chime_id) for chime_id in mapped)
    assert mapped[0].startswith("bob_chat@example.com")
    assert len(set(mapped)) == len(awkward)


def test_role_session_name_replaces_colons_and_shortens() -> None:
    """A Cognito identity id's colon is replaced; a long id is cut with a digest."""
    identity_id = f"us-east-1:{uuid.uuid4()}"
    long_id = "a" * 64

    assert role_session_name(identity_id).startswith("chime_us-east-1_")
    assert len(role_session_name(long_id)) <= 64
    assert role_session_name(long_id) != role_session_name("a" * 63)


def test_source_identity_is_the_chime_id_when_it_fits() -> None:
    """CloudTrail shows the Chime user id itself whenever STS allows it."""
    assert source_identity("alice") == "alice"
    assert source_identity("a") != "a"
    assert _STS_NAME.fullmatch(source_identity("a"))
