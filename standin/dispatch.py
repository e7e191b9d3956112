"""The path every API call takes, whichever service and protocol it speaks.

Authentication, fault injection, the in-flight count, the outcome statistics
and the request id behave the same for STS and Chime; only the error wire
format differs. Each protocol module supplies a `WireFormat` and an
operation; `dispatch` runs the common steps around it, so a fault or a
missing signature looks the same in the statistics whatever the service.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from standin.auth import SignatureRejection, SignedCredential, read_signature
from standin.disruption import drop_connection, hang_until_abandoned, pause
from standin.errors import ServiceError
from standin.faults import FaultAction
from standin.keys import STATE_KEY, STOPPING_KEY
from standin.state import (
    OUTCOME_ABANDONED,
    OUTCOME_DROP,
    OUTCOME_HANG,
    OUTCOME_OK,
    StandinState,
)

REQUEST_ID_HEADER = "x-amzn-RequestId"


class WireFormat(Protocol):
    """How one protocol writes errors, and which errors it uses for faults."""

    def error_response(self, error: ServiceError, request_id: str) -> web.Response:
        """Write `error` the way this protocol's clients parse it."""
        ...

    def signature_error(self, rejection: SignatureRejection) -> ServiceError:
        """Name the error this service answers for an unsigned request."""
        ...

    def fault_error(self, action: FaultAction) -> ServiceError:
        """Name the error this service answers for an injected failure."""
        ...


@dataclass(frozen=True, slots=True)
class CallContext:
    """What an operation needs besides its parameters."""

    request: web.Request
    state: StandinState
    request_id: str
    credential: SignedCredential


Operation = Callable[[CallContext], Awaitable[web.Response]]


@dataclass(slots=True)
class _Call:
    """One call's id and how it ended, filled in as the call progresses.

    The outcome starts as `abandoned` and is set at each point where the
    call's fate is decided, so a call whose handler is cancelled (aiohttp
    cancels handlers when clients disconnect, if configured to) is still
    recorded with what was happening to it.
    """

    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    outcome: str = OUTCOME_ABANDONED


async def dispatch(
    request: web.Request, api: str, wire: WireFormat, operation: Operation
) -> web.Response:
    """Run one API call: authenticate, inject faults, operate, record."""
    state = request.app[STATE_KEY]
    call = _Call()

    state.begin_call()
    try:
        response = await _answer(request, api, wire, operation, call)
    finally:
        state.end_call()
        state.record_call(api, call.outcome)

    response.headers[REQUEST_ID_HEADER] = call.request_id

    return response


async def _answer(
    request: web.Request,
    api: str,
    wire: WireFormat,
    operation: Operation,
    call: _Call,
) -> web.Response:
    """Produce the response, noting the call's outcome on `call`."""
    state = request.app[STATE_KEY]
    stopping = request.app[STOPPING_KEY]

    try:
        credential = _require_signature(request, wire)
        decision = state.faults.decide(api)

        await pause(decision.delay, stopping)

        if decision.action is FaultAction.HANG:
            call.outcome = OUTCOME_HANG
            await hang_until_abandoned(request, stopping)
            return drop_connection(request)

        if decision.action is FaultAction.DROP:
            call.outcome = OUTCOME_DROP
            return drop_connection(request)

        if decision.action is not FaultAction.RESPOND:
            raise wire.fault_error(decision.action)

        context = CallContext(request, state, call.request_id, credential)
        response = await operation(context)
    except ServiceError as error:
        call.outcome = error.code
        return wire.error_response(error, call.request_id)

    call.outcome = OUTCOME_OK
    return response


def _require_signature(request: web.Request, wire: WireFormat) -> SignedCredential:
    """Return the request's signing credential, or raise the service's error."""
    signature = read_signature(request.headers, request.query)

    if isinstance(signature, SignatureRejection):
        raise wire.signature_error(signature)

    return signature
