"""Sealing shared cache entries: names that hide users, values only we can open."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import pytest

from service.sealing import KEY_PREFIX, Sealer

if TYPE_CHECKING:
    from collections.abc import Callable

SCOPE = "arn:aws:iam::123456789012:role/chime-messaging-user"


@pytest.fixture
def old_key() -> bytes:
    """The key in use before a rotation."""
    return secrets.token_bytes(32)


@pytest.fixture
def new_key() -> bytes:
    """The key a rotation brings in."""
    return secrets.token_bytes(32)


def test_sealer_opens_what_it_sealed(old_key: bytes) -> None:
    """A value sealed for a slot opens from that slot, unchanged."""
    (slot,) = Sealer((old_key,)).slots("credentials", SCOPE, "alice")

    assert slot.open(slot.seal(b"the value")) == b"the value"


def test_sealer_seals_the_same_value_differently_each_time(old_key: bytes) -> None:
    """A fresh nonce per seal: equal values do not show as equal in Redis."""
    (slot,) = Sealer((old_key,)).slots("credentials", SCOPE, "alice")

    assert slot.seal(b"the value") != slot.seal(b"the value")


def test_sealer_names_hide_the_subject_and_depend_on_every_part(old_key: bytes) -> None:
    """Names carry the kind in clear and a hash of kind, scope and subject."""
    sealer = Sealer((old_key,))
    (name,) = (slot.name for slot in sealer.slots("credentials", SCOPE, "alice"))
    others = {
        slot.name
        for kind, scope, subject in (
            ("user", SCOPE, "alice"),
            ("credentials", SCOPE + "-other", "alice"),
            ("credentials", SCOPE, "alicf"),
        )
        for slot in sealer.slots(kind, scope, subject)
    }

    assert name.startswith(f"{KEY_PREFIX}:credentials:")
    assert "alice" not in name
    assert name not in others
    assert len(others) == 3


def test_sealer_writes_under_the_first_key_and_reads_under_all(
    old_key: bytes, new_key: bytes
) -> None:
    """During a rotation, entries sealed with the old key still open."""
    (before,) = Sealer((old_key,)).slots("credentials", SCOPE, "alice")
    during = Sealer((new_key, old_key)).slots("credentials", SCOPE, "alice")

    sealed = before.seal(b"written before the rotation")

    assert [slot.name for slot in during][1] == before.name
    assert during[0].name != before.name
    assert during[1].open(sealed) == b"written before the rotation"


def test_sealer_opens_nothing_sealed_with_another_key(
    old_key: bytes, new_key: bytes
) -> None:
    """A value sealed with another key, even under the same name, does not open."""
    (ours,) = Sealer((old_key,)).slots("credentials", SCOPE, "alice")
    (theirs,) = Sealer((new_key,)).slots("credentials", SCOPE, "alice")
    forged = type(ours)(ours.name, theirs._cipher)

    assert ours.open(forged.seal(b"planted")) is None


def test_sealer_opens_nothing_moved_from_another_slot(old_key: bytes) -> None:
    """The name is associated data: another user's entry fails to open here."""
    sealer = Sealer((old_key,))
    (alice,) = sealer.slots("credentials", SCOPE, "alice")
    (bob,) = sealer.slots("credentials", SCOPE, "bob")

    assert bob.open(alice.seal(b"alice's credentials")) is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda sealed: sealed[:-1],
        lambda sealed: sealed[:12],
        lambda sealed: b"\x02" + sealed[1:],
        lambda sealed: sealed[:-1] + bytes([sealed[-1] ^ 1]),
        lambda _sealed: b"",
    ],
    ids=["truncated", "header-only", "unknown-version", "flipped-bit", "empty"],
)
def test_sealer_opens_nothing_damaged(
    old_key: bytes, damage: Callable[[bytes], bytes]
) -> None:
    """Cut, altered or foreign bytes are refused, never raised on."""
    (slot,) = Sealer((old_key,)).slots("credentials", SCOPE, "alice")

    assert slot.open(damage(slot.seal(b"the value"))) is None


def test_sealer_needs_a_key() -> None:
    """Sealing with no key at all is a programming error, named at once."""
    with pytest.raises(ValueError, match="at least one key"):
        Sealer(())
