"""The failures a sign-in can end in, in the service's own terms.

Nothing here knows about HTTP: `service.problems` maps each class to a status code
and a problem+json body at the edge. Every message is safe to show to a client; what
is not (AWS error messages, key ids, stack traces) goes to the log instead.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationRequiredError",
    "AwsConfigurationError",
    "AwsUnavailableError",
    "InsufficientScopeError",
    "InvalidRequestError",
    "InvalidTokenError",
    "KeysUnavailableError",
    "SignInError",
]


class SignInError(Exception):
    """Base of every failure that ends a sign-in with an answer to the client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class AuthenticationRequiredError(SignInError):
    """The request carries no bearer token at all."""


class InvalidRequestError(SignInError):
    """The `Authorization` header is malformed."""


class InvalidTokenError(SignInError):
    """The token is expired, forged, malformed or not meant for this service."""


class InsufficientScopeError(SignInError):
    """The token is valid but lacks a claim the operator requires."""


class KeysUnavailableError(SignInError):
    """The identity provider's keys have not been loaded yet."""


class AwsUnavailableError(SignInError):
    """AWS throttled, failed or timed out; trying again later may succeed."""

    def __init__(self, detail: str, *, retry_after_seconds: int = 1) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds

    @classmethod
    def timed_out(cls) -> AwsUnavailableError:
        """Build the answer for a sign-in whose deadline passed before AWS answered."""
        return cls("AWS did not answer in time; retry shortly")


class AwsConfigurationError(SignInError):
    """AWS refused the request as configured; a person must fix the deployment."""
