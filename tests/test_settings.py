"""Settings from the environment: every problem reported at once, at startup."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from service.settings import Settings, SettingsError
from tests.support import APP_INSTANCE_ARN, AUDIENCE, ISSUER, ROLE_ARN

if TYPE_CHECKING:
    from pathlib import Path

_VALID = {
    "USER_ROLE_ARN": ROLE_ARN,
    "CHIME_APP_INSTANCE_ARN": APP_INSTANCE_ARN,
    "JWT_ISSUER": ISSUER,
    "JWT_AUDIENCE": AUDIENCE,
    "JWT_JWKS_URL": "https://idp.example.test/.well-known/jwks.json",
}


def test_settings_from_environ_reads_defaults() -> None:
    """A minimal environment gives the documented defaults."""
    settings = Settings.from_environ(_VALID)

    assert settings.aws_region == "us-east-1"
    assert settings.jwt_algorithms == ("RS256",)
    assert settings.jwt_user_id_claim == "sub"
    assert settings.jwt_display_name_claims == ("name", "preferred_username")
    assert settings.credentials_duration_seconds == 3600
    assert settings.cache_max_users == 100_000
    assert settings.port == 8080
    assert settings.sts_set_source_identity is False


def test_settings_from_environ_reads_lists_and_numbers() -> None:
    """Comma-separated lists and numbers are parsed and trimmed."""
    settings = Settings.from_environ(
        {
            **_VALID,
            "JWT_AUDIENCE": " web , mobile ",
            "JWT_ALGORITHMS": "RS256,ES256",
            "CREDENTIALS_DURATION_SECONDS": "900",
            "STS_SET_SOURCE_IDENTITY": "true",
            "PORT": "9000",
        }
    )

    assert settings.jwt_audience == ("web", "mobile")
    assert settings.jwt_algorithms == ("RS256", "ES256")
    assert settings.credentials_duration_seconds == 900
    assert settings.sts_set_source_identity is True
    assert settings.port == 9000


def test_settings_from_environ_lists_every_problem() -> None:
    """An empty environment names each missing variable in one error."""
    with pytest.raises(SettingsError) as raised:
        Settings.from_environ({})

    problems = "\n".join(raised.value.problems)
    for name in (
        "USER_ROLE_ARN",
        "CHIME_APP_INSTANCE_ARN",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
    ):
        assert name in problems
    assert "exactly one of JWT_JWKS_URL" in problems


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"USER_ROLE_ARN": "arn:aws:iam::1:role/x"},
            "USER_ROLE_ARN is not a valid ARN",
        ),
        ({"AWS_REGION": "eu-west-1"}, "does not match the region"),
        ({"JWT_JWKS_URL": None, "JWT_SECRET": "short"}, "at least 32 bytes"),
        ({"JWT_SECRET": "x" * 40}, "exactly one of"),
        ({"JWT_ALGORITHMS": "HS256"}, "'HS256' cannot be used with public keys"),
        ({"JWT_ALGORITHMS": "none"}, "'none' cannot be used"),
        ({"PORT": "eighty"}, "PORT must be a number"),
        ({"CREDENTIALS_DURATION_SECONDS": "60"}, "between 900 and 43200"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be one of"),
        ({"JWT_ISSUER": "ftp://idp"}, "JWT_ISSUER must be an https:// URL"),
        ({"STS_SET_SOURCE_IDENTITY": "maybe"}, "true or false"),
    ],
)
def test_settings_from_environ_refuses_bad_values(
    overrides: dict[str, str | None], expected: str
) -> None:
    """Each invalid value is named in the error."""
    environ = {**_VALID, **overrides}
    clean = {name: value for name, value in environ.items() if value is not None}

    with pytest.raises(SettingsError) as raised:
        Settings.from_environ(clean)

    assert expected in str(raised.value)


def test_settings_from_environ_reads_a_public_key_file(tmp_path: Path) -> None:
    """A PEM public key file is read at startup; a private key is refused."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp_path / "public.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )
    private = tmp_path / "private.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    base = {**_VALID, "JWT_JWKS_URL": ""}

    settings = Settings.from_environ({**base, "JWT_PUBLIC_KEY_FILE": str(public)})
    with pytest.raises(SettingsError) as raised:
        Settings.from_environ({**base, "JWT_PUBLIC_KEY_FILE": str(private)})

    assert settings.jwt_public_key_pem == public.read_bytes()
    assert "holds a private key" in str(raised.value)


def test_settings_repr_hides_the_secret() -> None:
    """Printing the settings, as a debugger or a log might, shows no secret."""
    secret = "s" * 48
    settings = Settings.from_environ(
        {**_VALID, "JWT_JWKS_URL": "", "JWT_SECRET": secret}
    )

    assert secret not in repr(settings)


def test_service_module_exits_with_the_problems_on_bad_settings() -> None:
    """`python -m service` with a bad environment prints every problem and exits 2."""
    environ = {"PATH": os.environ.get("PATH", ""), "JWT_SECRET": "short"}

    finished = subprocess.run(
        [sys.executable, "-m", "service"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 2
    assert "USER_ROLE_ARN is required" in finished.stderr
    assert "at least 32 bytes" in finished.stderr


def _cache_key_text() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def test_settings_from_environ_leaves_redis_off_by_default() -> None:
    """Without REDIS_URL every replica keeps to its own caches."""
    settings = Settings.from_environ(_VALID)

    assert settings.redis_url is None
    assert settings.cache_encryption_keys == ()
    assert settings.redis_timeout_seconds == 0.2


def test_settings_from_environ_reads_redis_and_rotating_keys() -> None:
    """Keys are read in order, padded or not; the first one is the writing key."""
    first, second = _cache_key_text(), _cache_key_text().rstrip("=")

    settings = Settings.from_environ(
        {
            **_VALID,
            "REDIS_URL": "rediss://:password@redis.example.internal:6379/0",
            "CACHE_ENCRYPTION_KEYS": f"{first}, {second}",
            "REDIS_TIMEOUT_SECONDS": "0.5",
        }
    )

    assert settings.cache_encryption_keys == (
        base64.urlsafe_b64decode(first),
        base64.urlsafe_b64decode(second + "="),
    )
    assert settings.redis_url == "rediss://:password@redis.example.internal:6379/0"
    assert settings.redis_timeout_seconds == 0.5


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"CACHE_ENCRYPTION_KEYS": None}, "CACHE_ENCRYPTION_KEYS is required"),
        ({"CACHE_ENCRYPTION_KEYS": "c2hvcnQ"}, "key 1 is not 32 bytes in base64url"),
        ({"CACHE_ENCRYPTION_KEYS": "A" * 42 + "B"}, "key 1 is not 32 bytes"),
        ({"CACHE_ENCRYPTION_KEYS": "+" * 43}, "key 1 is not 32 bytes"),
        ({"REDIS_URL": "http://redis.example.internal"}, "REDIS_URL must be a redis"),
        ({"REDIS_URL": "redis://"}, "REDIS_URL must be a redis"),
        ({"REDIS_LOCK_SECONDS": "10"}, "less than SIGN_IN_DEADLINE_SECONDS"),
        ({"REDIS_TIMEOUT_SECONDS": "0"}, "between 0.01 and 5.0"),
        ({"REDIS_BREAKER_FAILURES": "0"}, "between 1 and 1000"),
    ],
)
def test_settings_from_environ_refuses_bad_redis_settings(
    overrides: dict[str, str | None], expected: str
) -> None:
    """Each invalid Redis setting is named in the error, never the key itself."""
    key = _cache_key_text()
    environ = {
        **_VALID,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "CACHE_ENCRYPTION_KEYS": key,
        **overrides,
    }
    clean = {name: value for name, value in environ.items() if value is not None}

    with pytest.raises(SettingsError) as raised:
        Settings.from_environ(clean)

    assert expected in str(raised.value)
    assert key not in str(raised.value)


def test_settings_from_environ_refuses_a_key_listed_twice() -> None:
    """A repeated key is a copy-paste slip, not a rotation."""
    key = _cache_key_text()

    with pytest.raises(SettingsError) as raised:
        Settings.from_environ({**_VALID, "CACHE_ENCRYPTION_KEYS": f"{key},{key}"})

    assert raised.value.problems == ["CACHE_ENCRYPTION_KEYS: key 2 is listed twice"]


def test_settings_repr_hides_redis_password_and_keys() -> None:
    """Neither the Redis URL, which may hold a password, nor a key is printed."""
    key = _cache_key_text()
    settings = Settings.from_environ(
        {
            **_VALID,
            "REDIS_URL": "rediss://:hunter2-hunter2@redis.example.internal:6379",
            "CACHE_ENCRYPTION_KEYS": key,
        }
    )

    assert "hunter2" not in repr(settings)
    assert key not in repr(settings)
    assert repr(base64.urlsafe_b64decode(key)) not in repr(settings)
