"""The AWS clients and the one gate every AWS call of a sign-in passes through.

The clients are created once per process and closed at shutdown. Each call goes
through `AwsGate`, which bounds how many run at once (a login storm must not become
an unbounded queue in front of STS), retries the throttling that botocore's standard
mode leaves alone, and turns botocore's failures into the service's own errors: the
client learns whether to retry, never what AWS said.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectionError,  # noqa: A004 -- botocore's name, used only in this module
    HTTPClientError,
    NoCredentialsError,
    ReadTimeoutError,
)

from service.errors import AwsConfigurationError, AwsUnavailableError
from service.settings import SettingsError

if TYPE_CHECKING:
    from types_aiobotocore_chime_sdk_identity import ChimeSDKIdentityClient
    from types_aiobotocore_sts import STSClient

    from service.settings import Settings

__all__ = [
    "AwsClients",
    "AwsGate",
    "CallObserver",
    "check_role_chaining",
    "open_aws_clients",
]

_T = TypeVar("_T")

logger = structlog.get_logger(__name__)

# Codes AWS uses for "slow down"; some arrive as 400, some as 429.
_THROTTLING_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledClientException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)
# botocore's standard retry mode does not retry these; the gate does, a few times.
_RETRIED_BY_GATE: Final = frozenset({"ThrottledClientException"})
_GATE_RETRIES: Final = 2
_BACKOFF_BASE_SECONDS: Final = 0.05

# AWS caps a session assumed with role-session credentials at one hour.
_ROLE_CHAINING_LIMIT_SECONDS: Final = 3600

# Errors that recur on every sign-in are logged once a minute, not once a request.
_CONFIGURATION_LOG_INTERVAL_SECONDS: Final = 60.0

CallObserver = Callable[[str, str, float], None]
"""Told of every AWS call: the API name, its outcome and its duration in seconds."""


@dataclass(frozen=True, slots=True)
class AwsClients:
    """The process's AWS clients, open from startup to shutdown."""

    sts: STSClient
    chime: ChimeSDKIdentityClient


@asynccontextmanager
async def open_aws_clients(settings: Settings) -> AsyncIterator[AwsClients]:
    """Open the STS and Chime SDK Identity clients; close them on exit.

    Endpoints and credentials come from the AWS SDK's own configuration
    (`AWS_ENDPOINT_URL*`, IRSA, instance roles), untouched.
    """
    config = AioConfig(
        region_name=settings.aws_region,
        connect_timeout=settings.aws_connect_timeout_seconds,
        read_timeout=settings.aws_read_timeout_seconds,
        max_pool_connections=settings.aws_max_concurrency,
        # total_max_attempts counts the first try; max_attempts would not.
        retries={"mode": "standard", "total_max_attempts": settings.aws_max_attempts},
    )
    session = get_session()

    async with AsyncExitStack() as stack:
        sts = await stack.enter_async_context(
            session.create_client("sts", config=config)
        )
        chime = await stack.enter_async_context(
            session.create_client("chime-sdk-identity", config=config)
        )
        logger.debug("aws clients opened", region=settings.aws_region)

        yield AwsClients(sts=sts, chime=chime)

        logger.debug("aws clients closing")


async def check_role_chaining(sts: STSClient, settings: Settings) -> None:
    """Refuse a credentials duration that AWS would refuse on every sign-in.

    When the service's own credentials are a role session (IRSA, ECS, EC2), every
    AssumeRole is role chaining, which AWS caps at one hour. Only a duration above
    that needs the check; if STS cannot be asked now, sign-ins will say so later.
    """
    if settings.credentials_duration_seconds <= _ROLE_CHAINING_LIMIT_SECONDS:
        return

    try:
        identity = await sts.get_caller_identity()
    except (BotoCoreError, ClientError) as error:
        logger.warning("caller identity unknown", error=type(error).__name__)
        return

    if ":assumed-role/" in identity.get("Arn", ""):
        raise SettingsError(
            [
                (
                    f"CREDENTIALS_DURATION_SECONDS is "
                    f"{settings.credentials_duration_seconds}, but the service runs on "
                    "assumed-role credentials and AWS caps role chaining at "
                    f"{_ROLE_CHAINING_LIMIT_SECONDS} seconds"
                )
            ]
        )


class AwsGate:
    """Bounds, retries and translates AWS calls."""

    def __init__(
        self,
        *,
        max_concurrency: int,
        queue_timeout_seconds: float,
        observer: CallObserver | None = None,
    ) -> None:
        self._slots = asyncio.Semaphore(max_concurrency)
        self._in_flight = 0
        self._queue_timeout = queue_timeout_seconds
        self._observer = observer
        self._last_logged: dict[tuple[str, str], float] = {}

    @property
    def in_flight(self) -> int:
        """How many AWS calls hold a slot right now."""
        return self._in_flight

    async def call(
        self,
        api: str,
        operation: Callable[[], Awaitable[_T]],
        *,
        expected_errors: Collection[str] = (),
    ) -> _T:
        """Run `operation` in a slot; raise a `SignInError` if AWS says no.

        A `ClientError` whose code is in `expected_errors` is an answer the caller
        handles (a `ConflictException` for a user who exists), and is re-raised as is.
        """
        await self._acquire_slot()
        self._in_flight += 1
        try:
            return await self._call_with_retries(api, operation, expected_errors)
        finally:
            self._in_flight -= 1
            self._slots.release()

    async def _acquire_slot(self) -> None:
        try:
            async with asyncio.timeout(self._queue_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise AwsUnavailableError(
                "too many sign-ins are waiting for AWS", retry_after_seconds=1
            ) from None

    async def _call_with_retries(
        self,
        api: str,
        operation: Callable[[], Awaitable[_T]],
        expected_errors: Collection[str],
    ) -> _T:
        for attempt in range(_GATE_RETRIES + 1):
            started = time.perf_counter()
            try:
                result = await operation()
            except ClientError as error:
                code = _error_code(error)
                self._observe(api, code, started)
                if code in expected_errors:
                    raise
                if code in _RETRIED_BY_GATE and attempt < _GATE_RETRIES:
                    await asyncio.sleep(_backoff(attempt))
                    continue
                raise self._translate(api, error, code) from error
            except (BotoCoreError, TimeoutError) as error:
                self._observe(api, type(error).__name__, started)
                raise self._translate_transport(api, error) from error
            else:
                self._observe(api, "success", started)
                return result

        msg = "unreachable: the last attempt returns or raises"
        raise AssertionError(msg)

    def _observe(self, api: str, outcome: str, started: float) -> None:
        if self._observer is not None:
            self._observer(api, outcome, time.perf_counter() - started)

    def _translate(
        self, api: str, error: ClientError, code: str
    ) -> AwsUnavailableError | AwsConfigurationError:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _THROTTLING_CODES or status == 429:
            logger.warning("aws throttled", api=api, aws_error_code=code)
            return AwsUnavailableError("AWS is throttling sign-ins; retry shortly")
        if status >= 500:
            logger.warning("aws failed", api=api, aws_error_code=code, status=status)
            return AwsUnavailableError("AWS is failing; retry shortly")

        self._log_configuration_error(api, code, error)
        return AwsConfigurationError("AWS refused the service's configuration")

    def _translate_transport(
        self, api: str, error: BotoCoreError | TimeoutError
    ) -> AwsUnavailableError | AwsConfigurationError:
        if isinstance(error, NoCredentialsError):
            self._log_configuration_error(api, "NoCredentials", error)
            return AwsConfigurationError("the service has no AWS credentials")

        retryable = (ConnectionError, ConnectionClosedError, HTTPClientError)
        if not isinstance(error, (*retryable, ReadTimeoutError, TimeoutError)):
            self._log_configuration_error(api, type(error).__name__, error)
            return AwsConfigurationError("AWS refused the service's configuration")

        logger.warning("aws unreachable", api=api, error=type(error).__name__)
        return AwsUnavailableError("AWS did not answer; retry shortly")

    def _log_configuration_error(
        self, api: str, code: str, error: BaseException
    ) -> None:
        now = time.monotonic()
        last = self._last_logged.get((api, code))
        if last is not None and now - last < _CONFIGURATION_LOG_INTERVAL_SECONDS:
            return

        self._last_logged[(api, code)] = now
        logger.error(
            "aws configuration error",
            api=api,
            aws_error_code=code,
            aws_message=str(error),
        )


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


def _backoff(attempt: int) -> float:
    # Full jitter: spread retries of a storm instead of syncing them.
    return random.uniform(0, _BACKOFF_BASE_SECONDS * 2**attempt)  # noqa: S311 -- not crypto
