"""A local identity provider: one RSA signing key, its JWKS, and tokens on demand.

It stands in for Cognito, Auth0 or Keycloak in local runs and load tests. The key
is generated on first use into `.local/` (readable by its owner only) and the
service fetches the public half from the JWKS route the launcher serves, exactly as
it would from a real provider.

`python -m standin.identity_provider --sub alice --name "Alice Example"` prints a
token for the local setup, alone on the last line.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from standin.local_config import KEY_DIRECTORY, local_settings

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["LocalIdentityProvider"]

KEY_FILE_NAME: Final = "idp-signing-key.pem"
TOKEN_LIFETIME_SECONDS: Final = 3600


class LocalIdentityProvider:
    """Signs tokens with one RSA key and publishes its public half."""

    def __init__(self, private_key: rsa.RSAPrivateKey, *, issuer: str) -> None:
        self._private_key = private_key
        self.issuer = issuer
        public_jwk = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
        self.kid = _thumbprint(public_jwk)
        self._jwk = {**public_jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    @classmethod
    def from_key_directory(
        cls, directory: Path = KEY_DIRECTORY, *, issuer: str
    ) -> LocalIdentityProvider:
        """Load the key kept in `directory`, generating it on first use."""
        path = directory / KEY_FILE_NAME
        if not path.exists():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(pem)

        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise TypeError(f"{path} does not hold an RSA private key")
        return cls(loaded, issuer=issuer)

    def jwks(self) -> dict[str, object]:
        """Return the JWKS document the service fetches."""
        return {"keys": [self._jwk]}

    def mint(
        self,
        subject: str,
        *,
        audience: str,
        name: str | None = None,
        lifetime_seconds: int = TOKEN_LIFETIME_SECONDS,
        extra_claims: Mapping[str, object] | None = None,
    ) -> str:
        """Sign a token for `subject`, as a real provider's ID token would be."""
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": self.issuer,
            "aud": audience,
            "sub": subject,
            "iat": now,
            "exp": now + lifetime_seconds,
        }
        if name is not None:
            claims["name"] = name
        claims.update(extra_claims or {})

        return jwt.encode(
            claims, self._private_key, algorithm="RS256", headers={"kid": self.kid}
        )


def _thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638: the key id every provider could derive from the key alone."""
    members = {name: jwk[name] for name in ("e", "kty", "n")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def main(argv: list[str] | None = None) -> int:
    """Print a token for the local setup."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sub", required=True, help="the user id (the sub claim)")
    parser.add_argument("--name", help="the display name (the name claim)")
    parser.add_argument(
        "--lifetime", type=int, default=TOKEN_LIFETIME_SECONDS, help="seconds"
    )
    arguments = parser.parse_args(argv)

    settings = local_settings()
    provider = LocalIdentityProvider.from_key_directory(issuer=settings["JWT_ISSUER"])
    audience = settings["JWT_AUDIENCE"].split(",")[0].strip()

    token = provider.mint(
        arguments.sub,
        audience=audience,
        name=arguments.name,
        lifetime_seconds=arguments.lifetime,
    )
    sys.stdout.write(token + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
