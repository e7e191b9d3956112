"""The service's settings: one frozen object, built from the environment at startup.

Nothing reads the environment at import time. `Settings.from_environ` checks every
variable and reports all problems at once, so an operator fixes a deployment in one
round instead of one crash per typo. Tests build `Settings` directly.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import get_default_algorithms

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["LogFormat", "Settings", "SettingsError", "TokenUse"]

LogFormat = Literal["json", "console"]
TokenUse = Literal["id", "access"]

_T = TypeVar("_T")

# Account ids are 12 digits; partitions are aws, aws-cn, aws-us-gov, ...
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
_APP_INSTANCE_ARN = re.compile(
    r"arn:aws[a-z-]*:chime:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d):\d{12}"
    r":app-instance/[A-Za-z0-9-]{1,64}"
)
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d")

# RFC 7518 families: a configuration holds keys of one family only, so a public
# key can never be used as an HMAC secret (the classic algorithm-confusion attack).
_HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_ASYMMETRIC_ALGORITHMS = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
    }
)

# RFC 7518 section 3.2: an HMAC key must be at least as long as the hash output.
_MIN_HMAC_SECRET_BYTES = 32

# STS caps a session at 12 hours and refuses less than 15 minutes.
_MIN_DURATION_SECONDS = 900
_MAX_DURATION_SECONDS = 43_200

_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# redis-py's schemes: plain TCP, TLS (what ElastiCache's in-transit encryption
# needs), and a Unix socket.
_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
# AES-256: a cache encryption key is 32 random bytes, written as base64url.
_CACHE_KEY_BYTES = 32
_CACHE_KEY_TEXT = re.compile(r"[A-Za-z0-9_-]{43}=?")


class SettingsError(Exception):
    """The environment does not describe a runnable service; `problems` says why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            "invalid settings:\n" + "\n".join(f"  - {p}" for p in problems)
        )
        self.problems = problems


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the service is told by its operator."""

    user_role_arn: str
    chime_app_instance_arn: str
    aws_region: str
    jwt_issuer: str
    jwt_audience: tuple[str, ...] = ()
    jwt_client_id: str | None = None
    jwt_token_use: TokenUse | None = None
    jwt_required_claims: tuple[tuple[str, str], ...] = ()
    jwt_jwks_url: str | None = None
    jwt_public_key_pem: bytes | None = dataclasses.field(default=None, repr=False)
    jwt_secret: str | None = dataclasses.field(default=None, repr=False)
    jwt_algorithms: tuple[str, ...] = ("RS256",)
    jwt_leeway_seconds: int = 30
    jwt_user_id_claim: str = "sub"
    jwt_display_name_claims: tuple[str, ...] = ("name", "preferred_username")
    jwt_jwks_refetch_cooldown_seconds: float = 10.0
    jwt_verified_cache_size: int = 10_000
    credentials_duration_seconds: int = 3600
    credentials_refresh_margin_seconds: int = 300
    credentials_stale_min_seconds: int = 120
    cache_max_users: int = 100_000
    sign_in_deadline_seconds: float = 10.0
    aws_max_concurrency: int = 64
    aws_queue_timeout_seconds: float = 2.0
    aws_connect_timeout_seconds: float = 2.0
    aws_read_timeout_seconds: float = 5.0
    aws_max_attempts: int = 3
    sts_set_source_identity: bool = False
    host: str = "0.0.0.0"  # noqa: S104 -- a container must listen beyond loopback
    port: int = 8080
    log_level: str = "info"
    log_format: LogFormat = "json"
    shutdown_drain_seconds: float = 5.0
    cors_allowed_origins: tuple[str, ...] = ()
    redis_url: str | None = dataclasses.field(default=None, repr=False)
    cache_encryption_keys: tuple[bytes, ...] = dataclasses.field(default=(), repr=False)
    redis_timeout_seconds: float = 0.2
    redis_lock_seconds: float = 3.0
    redis_breaker_failures: int = 5
    redis_breaker_cooldown_seconds: float = 5.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """Read and check every variable; raise `SettingsError` listing all problems."""
        reader = _EnvironmentReader(environ)

        app_instance_arn = reader.matching("CHIME_APP_INSTANCE_ARN", _APP_INSTANCE_ARN)
        region = _region(reader, app_instance_arn)
        secret = reader.optional("JWT_SECRET")
        pem_path = reader.optional("JWT_PUBLIC_KEY_FILE")
        jwks_url = reader.optional("JWT_JWKS_URL")
        algorithms = _algorithms(reader, has_secret=secret is not None)
        duration = reader.integer(
            "CREDENTIALS_DURATION_SECONDS",
            3600,
            _MIN_DURATION_SECONDS,
            _MAX_DURATION_SECONDS,
        )
        margin = reader.integer("CREDENTIALS_REFRESH_MARGIN_SECONDS", 300, 0, duration)
        stale_min = reader.integer("CREDENTIALS_STALE_MIN_SECONDS", 120, 0, duration)

        deadline = reader.number("SIGN_IN_DEADLINE_SECONDS", 10.0, 0.1, 120.0)
        redis_url = _redis_url(reader)
        encryption_keys = _cache_encryption_keys(reader, redis_url)
        redis_timeout = reader.number("REDIS_TIMEOUT_SECONDS", 0.2, 0.01, 5.0)
        lock_seconds = reader.number("REDIS_LOCK_SECONDS", 3.0, 0.1, 60.0)
        if redis_url is not None and max(redis_timeout, lock_seconds) >= deadline:
            reader.problem(
                "REDIS_TIMEOUT_SECONDS and REDIS_LOCK_SECONDS must be less than "
                "SIGN_IN_DEADLINE_SECONDS, so that a slow Redis or a replica that "
                "died holding a lock delays sign-ins less than their deadline"
            )

        audience = reader.csv("JWT_AUDIENCE")
        client_id = reader.optional("JWT_CLIENT_ID")
        if not audience and client_id is None:
            reader.problem(
                "at least one of JWT_AUDIENCE and JWT_CLIENT_ID is required, so that "
                "tokens for other clients of the same issuer are refused"
            )

        _check_key_source(reader, secret, pem_path, jwks_url)
        if stale_min > margin:
            reader.problem(
                "CREDENTIALS_STALE_MIN_SECONDS must not exceed "
                "CREDENTIALS_REFRESH_MARGIN_SECONDS"
            )

        settings = cls(
            user_role_arn=reader.matching("USER_ROLE_ARN", _ROLE_ARN),
            chime_app_instance_arn=app_instance_arn,
            aws_region=region,
            jwt_issuer=reader.url("JWT_ISSUER", required=True) or "",
            jwt_audience=audience,
            jwt_client_id=client_id,
            jwt_token_use=_token_use(reader),
            jwt_required_claims=_required_claims(reader),
            jwt_jwks_url=reader.url("JWT_JWKS_URL", required=False),
            jwt_public_key_pem=_read_pem(reader, pem_path),
            jwt_secret=secret,
            jwt_algorithms=algorithms,
            jwt_leeway_seconds=reader.integer("JWT_LEEWAY_SECONDS", 30, 0, 300),
            jwt_user_id_claim=reader.optional("JWT_USER_ID_CLAIM") or "sub",
            jwt_display_name_claims=reader.csv("JWT_DISPLAY_NAME_CLAIMS")
            or ("name", "preferred_username"),
            jwt_jwks_refetch_cooldown_seconds=reader.number(
                "JWT_JWKS_REFETCH_COOLDOWN_SECONDS", 10.0, 0.0, 3600.0
            ),
            jwt_verified_cache_size=reader.integer(
                "JWT_VERIFIED_CACHE_SIZE", 10_000, 0, 1_000_000
            ),
            credentials_duration_seconds=duration,
            credentials_refresh_margin_seconds=margin,
            credentials_stale_min_seconds=stale_min,
            cache_max_users=reader.integer("CACHE_MAX_USERS", 100_000, 1, 10_000_000),
            sign_in_deadline_seconds=deadline,
            aws_max_concurrency=reader.integer("AWS_MAX_CONCURRENCY", 64, 1, 4096),
            aws_queue_timeout_seconds=reader.number(
                "AWS_QUEUE_TIMEOUT_SECONDS", 2.0, 0.0, 60.0
            ),
            aws_connect_timeout_seconds=reader.number(
                "AWS_CONNECT_TIMEOUT_SECONDS", 2.0, 0.1, 60.0
            ),
            aws_read_timeout_seconds=reader.number(
                "AWS_READ_TIMEOUT_SECONDS", 5.0, 0.1, 120.0
            ),
            aws_max_attempts=reader.integer("AWS_MAX_ATTEMPTS", 3, 1, 10),
            sts_set_source_identity=reader.boolean("STS_SET_SOURCE_IDENTITY"),
            host=reader.optional("HOST") or "0.0.0.0",  # noqa: S104 -- as above
            port=reader.integer("PORT", 8080, 1, 65_535),
            log_level=reader.choice("LOG_LEVEL", _LOG_LEVELS, "info"),
            log_format=_log_format(reader),
            shutdown_drain_seconds=reader.number(
                "SHUTDOWN_DRAIN_SECONDS", 5.0, 0.0, 300.0
            ),
            cors_allowed_origins=_origins(reader),
            redis_url=redis_url,
            cache_encryption_keys=encryption_keys,
            redis_timeout_seconds=redis_timeout,
            redis_lock_seconds=lock_seconds,
            redis_breaker_failures=reader.integer("REDIS_BREAKER_FAILURES", 5, 1, 1000),
            redis_breaker_cooldown_seconds=reader.number(
                "REDIS_BREAKER_COOLDOWN_SECONDS", 5.0, 0.1, 600.0
            ),
        )

        reader.raise_if_any()
        return settings

    @property
    def uses_hmac(self) -> bool:
        """Whether tokens are verified with a shared secret rather than public keys."""
        return self.jwt_secret is not None


class _EnvironmentReader:
    """Reads variables, collecting every problem instead of stopping at the first."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._problems: list[str] = []

    def problem(self, message: str) -> None:
        self._problems.append(message)

    def raise_if_any(self) -> None:
        if self._problems:
            raise SettingsError(self._problems)

    def optional(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            self.problem(f"{name} is required")
            return ""
        return value

    def matching(self, name: str, pattern: re.Pattern[str]) -> str:
        value = self.required(name)
        if value and pattern.fullmatch(value) is None:
            self.problem(f"{name} is not a valid ARN: {value!r}")
        return value

    def csv(self, name: str, *, required: bool = False) -> tuple[str, ...]:
        raw = self.required(name) if required else self.optional(name) or ""
        return tuple(item.strip() for item in raw.split(",") if item.strip())

    def integer(self, name: str, default: int, minimum: int, maximum: int) -> int:
        return self._bounded(name, default, minimum, maximum, int)

    def number(
        self, name: str, default: float, minimum: float, maximum: float
    ) -> float:
        return self._bounded(name, default, minimum, maximum, float)

    def boolean(self, name: str) -> bool:
        raw = (self.optional(name) or "false").lower()
        if raw not in {"true", "false", "1", "0", "yes", "no"}:
            self.problem(f"{name} must be true or false, not {raw!r}")
        return raw in {"true", "1", "yes"}

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = (self.optional(name) or default).lower()
        if value not in allowed:
            self.problem(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        return value

    def url(self, name: str, *, required: bool) -> str | None:
        value = self.required(name) if required else self.optional(name)
        if not value:
            return None

        parts = urlsplit(value)
        if parts.scheme not in {"https", "http"} or not parts.hostname:
            self.problem(f"{name} must be an https:// URL, not {value!r}")
        return value

    def _bounded(
        self,
        name: str,
        default: _T,
        minimum: _T,
        maximum: _T,
        parse: Callable[[str], _T],
    ) -> _T:
        raw = self.optional(name)
        if raw is None:
            return default

        try:
            value = parse(raw)
        except ValueError:
            self.problem(f"{name} must be a number, not {raw!r}")
            return default

        if not minimum <= value <= maximum:  # type: ignore[operator]  # int or float
            self.problem(f"{name} must be between {minimum} and {maximum}, not {raw}")
        return value


def _region(reader: _EnvironmentReader, app_instance_arn: str) -> str:
    match = _APP_INSTANCE_ARN.fullmatch(app_instance_arn)
    arn_region = match["region"] if match else ""
    region = reader.optional("AWS_REGION") or arn_region
    if region and _REGION.fullmatch(region) is None:
        reader.problem(f"AWS_REGION is not a region name: {region!r}")
    elif arn_region and region != arn_region:
        reader.problem(
            f"AWS_REGION {region!r} does not match the region of "
            f"CHIME_APP_INSTANCE_ARN ({arn_region!r})"
        )
    return region


def _algorithms(reader: _EnvironmentReader, *, has_secret: bool) -> tuple[str, ...]:
    default = ("HS256",) if has_secret else ("RS256",)
    algorithms = reader.csv("JWT_ALGORITHMS") or default
    family = _HMAC_ALGORITHMS if has_secret else _ASYMMETRIC_ALGORITHMS
    known = get_default_algorithms()
    for algorithm in algorithms:
        if algorithm not in known or algorithm not in family:
            kind = "a shared secret" if has_secret else "public keys"
            reader.problem(
                f"JWT_ALGORITHMS: {algorithm!r} cannot be used with {kind}; "
                f"choose from {', '.join(sorted(family))}"
            )
    return algorithms


def _check_key_source(
    reader: _EnvironmentReader,
    secret: str | None,
    pem_path: str | None,
    jwks_url: str | None,
) -> None:
    given = [v for v in (secret, pem_path, jwks_url) if v is not None]
    if len(given) != 1:
        reader.problem(
            "exactly one of JWT_JWKS_URL, JWT_PUBLIC_KEY_FILE and JWT_SECRET "
            "is required"
        )
    if secret is not None and len(secret.encode()) < _MIN_HMAC_SECRET_BYTES:
        reader.problem(
            f"JWT_SECRET must be at least {_MIN_HMAC_SECRET_BYTES} bytes long"
        )


def _read_pem(reader: _EnvironmentReader, path: str | None) -> bytes | None:
    if path is None:
        return None

    try:
        pem = Path(path).read_bytes()
    except OSError as error:
        reader.problem(f"JWT_PUBLIC_KEY_FILE cannot be read: {error.strerror}")
        return None

    if b"PRIVATE KEY" in pem:
        reader.problem("JWT_PUBLIC_KEY_FILE holds a private key; give the public key")
        return None

    try:
        serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        reader.problem("JWT_PUBLIC_KEY_FILE is not a PEM public key")
        return None
    return pem


def _token_use(reader: _EnvironmentReader) -> TokenUse | None:
    value = reader.optional("JWT_TOKEN_USE")
    if value is None:
        return None
    if value not in {"id", "access"}:
        reader.problem(f"JWT_TOKEN_USE must be id or access, not {value!r}")
        return None
    return "id" if value == "id" else "access"


def _required_claims(reader: _EnvironmentReader) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in reader.csv("JWT_REQUIRED_CLAIMS"):
        claim, separator, value = item.partition("=")
        if not separator or not claim.strip() or not value.strip():
            reader.problem(f"JWT_REQUIRED_CLAIMS: expected claim=value, not {item!r}")
            continue
        pairs.append((claim.strip(), value.strip()))
    return tuple(pairs)


def _origins(reader: _EnvironmentReader) -> tuple[str, ...]:
    origins = reader.csv("CORS_ALLOWED_ORIGINS")
    for origin in origins:
        parts = urlsplit(origin)
        exact = f"{parts.scheme}://{parts.netloc}" == origin
        if parts.scheme not in {"https", "http"} or not parts.hostname or not exact:
            reader.problem(
                "CORS_ALLOWED_ORIGINS takes exact origins such as "
                f"https://chat.example.com, not {origin!r}"
            )
    return origins


def _redis_url(reader: _EnvironmentReader) -> str | None:
    url = reader.optional("REDIS_URL")
    if url is None:
        return None

    parts = urlsplit(url)
    host_needed = parts.scheme != "unix"
    if parts.scheme not in _REDIS_SCHEMES or (host_needed and not parts.hostname):
        # The URL may carry a password: name the variable, never the value.
        reader.problem(
            "REDIS_URL must be a redis://, rediss:// or unix:// URL with a host"
        )
        return None
    return url


def _cache_encryption_keys(
    reader: _EnvironmentReader, redis_url: str | None
) -> tuple[bytes, ...]:
    """Parse the keys, the first for writing; checked even while Redis is off."""
    texts = reader.csv("CACHE_ENCRYPTION_KEYS")
    if redis_url is not None and not texts:
        reader.problem(
            "CACHE_ENCRYPTION_KEYS is required when REDIS_URL is set: "
            "nothing is written to Redis unencrypted"
        )

    keys = []
    for position, text in enumerate(texts, start=1):
        key = _cache_key(text)
        if key is None:
            reader.problem(
                f"CACHE_ENCRYPTION_KEYS: key {position} is not {_CACHE_KEY_BYTES} "
                "bytes in base64url (43 characters, or 44 with its = padding)"
            )
        elif key in keys:
            reader.problem(f"CACHE_ENCRYPTION_KEYS: key {position} is listed twice")
        else:
            keys.append(key)
    return tuple(keys)


def _cache_key(text: str) -> bytes | None:
    if _CACHE_KEY_TEXT.fullmatch(text) is None:
        return None

    try:
        key = base64.urlsafe_b64decode(text.rstrip("=") + "=")
    except binascii.Error:
        return None

    # Only one spelling per key: unused trailing bits must be zero.
    canonical = base64.urlsafe_b64encode(key).decode().rstrip("=")
    if len(key) != _CACHE_KEY_BYTES or canonical != text.rstrip("="):
        return None
    return key


def _log_format(reader: _EnvironmentReader) -> LogFormat:
    value = reader.choice("LOG_FORMAT", ("json", "console"), "json")
    return "console" if value == "console" else "json"


def is_loopback_url(url: str) -> bool:
    """Whether `url` points at this machine, where plain http cannot be snooped."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
