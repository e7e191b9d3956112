"""Sealing cache entries for Redis: whoever reads Redis learns nothing usable.

Every entry the replicas share sits under a name that is a keyed hash of whose
entry it is, so no user id appears in a Redis key, and its value is encrypted and
authenticated with AES-256-GCM. The Redis key is the cipher's associated data:
an entry copied under another user's name fails to open instead of handing that
user someone else's credentials.

`CACHE_ENCRYPTION_KEYS` lists one or more keys so they can rotate. Each key gives
its own names and its own cipher (both derived with HKDF, so neither use weakens
the other): entries are written under the first key's name only, and looked up
under every key's name, so entries written before a rotation stay readable while
the old key is still listed second.

A sealed value is one version byte, a random 96-bit nonce, then the ciphertext
with its 128-bit tag. Random nonces are safe for far more entries than one key
ever seals here (NIST's bound is 2^32 per key).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
from typing import TYPE_CHECKING, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Sealer", "Slot"]

KEY_PREFIX: Final = "chime-sign-in:v1"
"""Every Redis key the service writes starts with this, so a shared Redis is tidy."""

_FORMAT_VERSION: Final = b"\x01"
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16

# HKDF's `info` separates the two uses of one configured key.
_CIPHER_INFO: Final = b"chime-sign-in cache v1: AES-256-GCM"
_NAMES_INFO: Final = b"chime-sign-in cache v1: HMAC-SHA256 key names"


@dataclasses.dataclass(frozen=True, slots=True)
class Slot:
    """One place in Redis for one entry, and the key that guards it."""

    name: str
    """The Redis key: a prefix, the kind of entry, and a keyed hash of whose it is."""

    _cipher: AESGCM = dataclasses.field(repr=False)

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt `plaintext` for this slot alone."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._cipher.encrypt(nonce, plaintext, self._associated_data)
        return _FORMAT_VERSION + nonce + sealed

    def open(self, sealed: bytes) -> bytes | None:
        """Decrypt a value read from this slot; None if it was not sealed for it.

        None covers a value sealed with another key, moved from another slot,
        cut short or altered: all of them are simply not entries of ours.
        """
        header = len(_FORMAT_VERSION) + _NONCE_BYTES
        if len(sealed) < header + _TAG_BYTES or not sealed.startswith(_FORMAT_VERSION):
            return None

        nonce = sealed[len(_FORMAT_VERSION) : header]
        try:
            return self._cipher.decrypt(nonce, sealed[header:], self._associated_data)
        except InvalidTag:
            return None

    @property
    def _associated_data(self) -> bytes:
        return _FORMAT_VERSION + self.name.encode()


@dataclasses.dataclass(frozen=True, slots=True)
class _DerivedKey:
    """What one configured key gives: a cipher and a key for naming entries."""

    cipher: AESGCM
    naming: bytes

    @classmethod
    def from_configured(cls, key: bytes) -> _DerivedKey:
        return cls(
            cipher=AESGCM(_derive(key, _CIPHER_INFO)),
            naming=_derive(key, _NAMES_INFO),
        )


class Sealer:
    """Names and seals entries with the configured keys; the first one writes."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a Sealer needs at least one key")
        self._keys = tuple(_DerivedKey.from_configured(key) for key in keys)

    def slots(self, kind: str, scope: str, subject: str) -> tuple[Slot, ...]:
        """Return the entry's slot under each key, the one to write first.

        `scope` (the role or app instance) keeps entries of deployments that
        share a Redis apart; `subject` (the Chime user id) appears only hashed.
        """
        label = f"{kind}\n{scope}\n{subject}".encode("utf-8", "surrogatepass")
        return tuple(
            Slot(f"{KEY_PREFIX}:{kind}:{_keyed_hash(key.naming, label)}", key.cipher)
            for key in self._keys
        )


def _derive(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


def _keyed_hash(key: bytes, label: bytes) -> str:
    return hmac.new(key, label, hashlib.sha256).hexdigest()
