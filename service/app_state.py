"""The typed keys of everything the application holds, declared in one place."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from aiohttp import web

from service.aws import AwsGate
from service.chime import AppInstanceUsers
from service.credentials import CredentialsCache
from service.metrics import Metrics
from service.settings import Settings
from service.signin import SignIn
from service.tokens import TokenVerifier

if TYPE_CHECKING:
    from collections.abc import Callable

    from service.shared_cache import SharedCache

__all__ = [
    "CLOCK",
    "CREDENTIALS",
    "GATE",
    "LIFECYCLE",
    "METRICS",
    "SETTINGS",
    "SHARED_CACHE",
    "SIGN_IN",
    "USERS",
    "VERIFIER",
    "Lifecycle",
]


@dataclasses.dataclass(slots=True)
class Lifecycle:
    """Where the process is in its life, for the readiness probe."""

    aws_open: bool = False
    shutting_down: bool = False


SETTINGS = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
METRICS = web.AppKey("metrics", Metrics)
VERIFIER = web.AppKey("verifier", TokenVerifier)
SHARED_CACHE: web.AppKey[SharedCache] = web.AppKey("shared_cache")
GATE = web.AppKey("gate", AwsGate)
CREDENTIALS = web.AppKey("credentials", CredentialsCache)
USERS = web.AppKey("users", AppInstanceUsers)
SIGN_IN = web.AppKey("sign_in", SignIn)
