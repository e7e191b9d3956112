"""Chime SDK Identity over rest-json: create, describe and update AppInstanceUsers.

A user's ARN is its app instance's ARN plus `/user/<AppInstanceUserId>`.
Creating a user that exists is a conflict, except when the call repeats the
creating call's ClientRequestToken and parameters: then it is a retry of the
same request and succeeds again with the same ARN, which is what lets a
client retry CreateAppInstanceUser safely after a timeout.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from aiohttp import web

from standin.auth import SignatureProblem, SignatureRejection
from standin.dispatch import CallContext, dispatch
from standin.errors import ServiceError
from standin.faults import FaultAction
from standin.models import CHIME_SDK_IDENTITY, modeled_error, operation_model
from standin.restjson import (
    MalformedRequestError,
    decode_request,
    render_error,
    render_result,
    route_path,
)
from standin.state import AppInstanceUser, StandinState, Tag, UserCreation
from standin.validation import summarize, validate

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

_APP_INSTANCE_ARN: Final = (
    r"arn:aws[a-z-]*:chime:[a-z0-9-]+:[0-9]{12}:app-instance/[A-Za-z0-9_.-]+"
)
_APP_INSTANCE: Final = re.compile(_APP_INSTANCE_ARN, re.ASCII)
_USER_ARN: Final = re.compile(
    rf"(?P<app_instance>{_APP_INSTANCE_ARN})/user/(?P<user_id>[^/]+)", re.ASCII
)

_BODY_CODES: Final = {
    "BadRequestException": "BadRequest",
    "ConflictException": "Conflict",
    "ForbiddenException": "Forbidden",
    "NotFoundException": "NotFound",
    "ResourceLimitExceededException": "ResourceLimitExceeded",
    "ServiceFailureException": "ServiceFailure",
    "ServiceUnavailableException": "ServiceUnavailable",
    "ThrottledClientException": "Throttled",
    "UnauthorizedClientException": "Unauthorized",
}
"""The `Code` Chime puts in an error body, from its ErrorCode enum."""


@dataclass(frozen=True, slots=True)
class ChimeWire:
    """Chime's rest-json error format and its names for common errors."""

    def error_response(self, error: ServiceError, request_id: str) -> web.Response:
        """Write the error as botocore's rest-json parser reads it."""
        del request_id  # rest-json carries it in a header only; dispatch sets it.
        body_code = _BODY_CODES.get(error.code, error.code.removesuffix("Exception"))

        return render_error(error, body_code)

    def signature_error(self, rejection: SignatureRejection) -> ServiceError:
        """Answer an unsigned request as AWS's rest-json front door does."""
        if rejection.problem is SignatureProblem.MISSING:
            return ServiceError(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
                403,
            )

        return ServiceError("IncompleteSignatureException", rejection.detail, 403)

    def fault_error(self, action: FaultAction) -> ServiceError:
        """Answer an injected failure with Chime's modeled errors."""
        if action is FaultAction.THROTTLE:
            return _error("ThrottledClientException", "Rate exceeded")

        if action is FaultAction.SERVICE_UNAVAILABLE:
            return _error("ServiceUnavailableException", "Service is unavailable")

        return _error("ServiceFailureException", "The service encountered an error")


WIRE: Final = ChimeWire()

ChimeOperation = Callable[[CallContext, dict[str, object]], web.Response]


def add_chime_routes(app: web.Application) -> None:
    """Register each served operation at the method and path its model gives."""
    operations: dict[str, ChimeOperation] = {
        "CreateAppInstanceUser": _create_user,
        "DescribeAppInstanceUser": _describe_user,
        "UpdateAppInstanceUser": _update_user,
    }

    for name, operation in operations.items():
        model = operation_model(CHIME_SDK_IDENTITY, name)
        app.router.add_route(
            str(model.http["method"]), route_path(model), _handler(name, operation)
        )


def _handler(name: str, operation: ChimeOperation) -> Handler:
    """Wrap an operation with decoding, validation and the common dispatch."""
    model = operation_model(CHIME_SDK_IDENTITY, name)

    async def handle(request: web.Request) -> web.Response:
        async def run(context: CallContext) -> web.Response:
            try:
                decoded = await decode_request(model, request)
            except MalformedRequestError as error:
                raise _error("BadRequestException", str(error)) from None

            if model.input_shape is not None:
                violations = validate(model.input_shape, decoded)
                if violations:
                    raise _error("BadRequestException", summarize(violations))

            return operation(context, decoded)

        return await dispatch(request, name, WIRE, run)

    return handle


def _create_user(context: CallContext, request: dict[str, object]) -> web.Response:
    """Create a user, or repeat an identical earlier creation."""
    state = context.state
    app_instance_arn = str(request["AppInstanceArn"])
    _require_app_instance(state, app_instance_arn)
    expiration = _mapping(request.get("ExpirationSettings"))

    creation = UserCreation(
        app_instance_arn=app_instance_arn,
        user_id=str(request["AppInstanceUserId"]),
        name=str(request["Name"]),
        metadata=_optional_text(request.get("Metadata")),
        tags=_tags(request.get("Tags")),
        expiration_days=_optional_int(expiration.get("ExpirationDays")),
        expiration_criterion=_optional_text(expiration.get("ExpirationCriterion")),
        client_request_token=str(request["ClientRequestToken"]),
    )
    arn = f"{app_instance_arn}/user/{creation.user_id}"
    existing = state.users.get(arn)

    if existing is not None and existing.creation != creation:
        raise _error(
            "ConflictException",
            f"The request could not be processed because AppInstanceUser {arn} "
            "already exists",
        )

    if existing is None:
        now = state.clock()
        state.users[arn] = AppInstanceUser(
            arn=arn,
            name=creation.name,
            metadata=creation.metadata,
            created=now,
            last_updated=now,
            creation=creation,
        )

    return _result("CreateAppInstanceUser", {"AppInstanceUserArn": arn})


def _describe_user(context: CallContext, request: dict[str, object]) -> web.Response:
    """Return a user's details, timestamps as epoch seconds."""
    user = _find_user(context.state, str(request["AppInstanceUserArn"]))
    creation = user.creation
    expiration = (
        {
            "ExpirationDays": creation.expiration_days,
            "ExpirationCriterion": creation.expiration_criterion,
        }
        if creation.expiration_days is not None
        else None
    )

    described = {
        "AppInstanceUserArn": user.arn,
        "Name": user.name,
        "Metadata": user.metadata,
        "CreatedTimestamp": user.created,
        "LastUpdatedTimestamp": user.last_updated,
        "ExpirationSettings": expiration,
    }
    return _result("DescribeAppInstanceUser", {"AppInstanceUser": described})


def _update_user(context: CallContext, request: dict[str, object]) -> web.Response:
    """Replace a user's name and metadata."""
    state = context.state
    user = _find_user(state, str(request["AppInstanceUserArn"]))

    user.name = str(request["Name"])
    user.metadata = _optional_text(request.get("Metadata"))
    user.last_updated = state.clock()

    return _result("UpdateAppInstanceUser", {"AppInstanceUserArn": user.arn})


def _find_user(state: StandinState, arn: str) -> AppInstanceUser:
    """Look a user up by ARN, failing as Chime does for each kind of miss."""
    parsed = _USER_ARN.fullmatch(arn)
    if parsed is None:
        raise _error("BadRequestException", f"Invalid AppInstanceUserArn: {arn}")

    _require_app_instance(state, parsed["app_instance"])

    user = state.users.get(arn)
    if user is None:
        raise _error("NotFoundException", f"AppInstanceUser {arn} does not exist")

    return user


def _require_app_instance(state: StandinState, arn: str) -> None:
    """Refuse an ARN that names no app instance, or one not configured."""
    if _APP_INSTANCE.fullmatch(arn) is None:
        raise _error("BadRequestException", f"Invalid AppInstanceArn: {arn}")

    if state.app_instance_arns is not None and arn not in state.app_instance_arns:
        raise _error("NotFoundException", f"AppInstance {arn} does not exist")


def _result(operation_name: str, result: Mapping[str, object]) -> web.Response:
    """Write a successful answer."""
    return render_result(operation_model(CHIME_SDK_IDENTITY, operation_name), result)


def _error(shape_name: str, message: str) -> ServiceError:
    """Build one of Chime's modeled errors."""
    return modeled_error(CHIME_SDK_IDENTITY, shape_name, message)


def _tags(value: object) -> tuple[Tag, ...]:
    """Read validated `Tags` into Tag values."""
    if not isinstance(value, list):
        return ()

    return tuple(
        Tag(str(item["Key"]), str(item["Value"]))
        for item in value
        if isinstance(item, dict)
    )


def _mapping(value: object) -> Mapping[str, object]:
    """Read a validated optional structure."""
    return value if isinstance(value, dict) else {}


def _optional_text(value: object) -> str | None:
    """Read a validated optional string."""
    return value if isinstance(value, str) else None


def _optional_int(value: object) -> int | None:
    """Read a validated optional integer."""
    return value if isinstance(value, int) else None
