"""The error every API handler raises, independent of how it goes on the wire.

Handlers describe a failure once (code, message, status, whose fault); each
protocol module decides how to write it: STS as a query-protocol
`<ErrorResponse>`, Chime as a rest-json body with `x-amzn-ErrorType`. Keeping
the two apart lets the fault injector and the authentication check raise the
same kind of error for both services.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ServiceError(Exception):
    """An AWS error answer: botocore raises a ClientError with this `code`.

    `sender_fault` is AWS's Sender/Receiver split: False for the 5xx answers
    that blame the service rather than the request. Not frozen: Python's own
    machinery assigns `__context__` and `__traceback__` on exceptions.
    """

    code: str
    message: str
    status: int
    sender_fault: bool = True

    def __str__(self) -> str:
        """Read like botocore's rendering of the same error."""
        return f"{self.code} ({self.status}): {self.message}"
