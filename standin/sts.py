"""STS over the query protocol: AssumeRole and GetCallerIdentity.

Requests are form fields POSTed to `/` (`Action=AssumeRole&Version=...`),
decoded and validated from botocore's STS model; answers are XML in the STS
namespace, exactly the elements AWS sends. Beyond the model, AssumeRole
enforces the rules AWS states in prose: a role ARN must name a role,
SourceIdentity may not start with `aws:`, tag keys must be unique ignoring
case, an inline policy must be JSON, and the packed policy must fit.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from aiohttp import web

from standin.auth import SignatureProblem, SignatureRejection
from standin.credentials import mint_temporary_credentials, unique_id
from standin.dispatch import CallContext, Operation, dispatch
from standin.errors import ServiceError
from standin.faults import FaultAction
from standin.models import STS, modeled_error, operation_model, service_model
from standin.query import decode_query, render_error, render_result
from standin.state import IssuedSession, StandinState, Tag
from standin.validation import summarize, validate

if TYPE_CHECKING:
    from collections.abc import Mapping

_CONTENT_TYPE: Final = "text/xml"
_DEFAULT_DURATION_SECONDS: Final = 3600
_PACKED_POLICY_BUDGET_BYTES: Final = 2048
"""Approximates AWS's undisclosed limit on the packed policies and tags.

AWS compresses session policies and tags into a binary form and reports how
much of its limit they use as PackedPolicySize; the stand-in compresses the
same inputs with zlib and measures them against this budget.
"""

_UNKNOWN_API: Final = "Unknown"
"""Where calls naming no operation the stand-in serves are counted."""

_ROLE_ARN: Final = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):iam::(?P<account>[0-9]{12}):"
    r"role/(?:[!-~]*/)?(?P<name>[\w+=,.@-]{1,64})",
    re.ASCII,
)


@dataclass(frozen=True, slots=True)
class StsWire:
    """STS's query-protocol error format and its names for common errors."""

    def error_response(self, error: ServiceError, request_id: str) -> web.Response:
        """Write `<ErrorResponse>` with the error's status."""
        namespace = service_model(STS).metadata["xmlNamespace"]

        return web.Response(
            status=error.status,
            body=render_error(namespace, error, request_id),
            content_type=_CONTENT_TYPE,
        )

    def signature_error(self, rejection: SignatureRejection) -> ServiceError:
        """Answer an unsigned request as STS does."""
        if rejection.problem is SignatureProblem.MISSING:
            return ServiceError("MissingAuthenticationToken", rejection.detail, 403)

        return ServiceError("IncompleteSignature", rejection.detail, 400)

    def fault_error(self, action: FaultAction) -> ServiceError:
        """Answer an injected failure with STS's own error codes."""
        if action is FaultAction.THROTTLE:
            return ServiceError("Throttling", "Rate exceeded", 400)

        if action is FaultAction.SERVICE_UNAVAILABLE:
            return ServiceError(
                "ServiceUnavailable", "Service is unavailable", 503, sender_fault=False
            )

        return ServiceError(
            "InternalFailure",
            "The request processing has failed because of an unknown error.",
            500,
            sender_fault=False,
        )


WIRE: Final = StsWire()


async def handle_sts(request: web.Request) -> web.Response:
    """Route a query-protocol request by its Action and Version fields."""
    params = await _read_params(request)
    action = params.get("Action")
    version = params.get("Version")
    model = service_model(STS)

    if action is None:
        return await dispatch(request, _UNKNOWN_API, WIRE, _refuse_missing_action)

    if action not in _OPERATIONS or version != model.api_version:
        refusal = _refuse_unknown_action(action, version)
        return await dispatch(request, _UNKNOWN_API, WIRE, refusal)

    operation = _OPERATIONS[action]

    async def run(context: CallContext) -> web.Response:
        return await operation(context, params)

    return await dispatch(request, action, WIRE, run)


async def _read_params(request: web.Request) -> dict[str, str]:
    """Merge the query string and the form body, as AWS accepts either."""
    form = await request.post()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}

    return {**request.query, **fields}


async def _refuse_missing_action(_context: CallContext) -> web.Response:
    """Answer a request that names no Action."""
    raise ServiceError("MissingAction", "Missing Action", 400)


def _refuse_unknown_action(action: str, version: str | None) -> Operation:
    """Answer a request for an operation or version the stand-in does not serve."""

    async def refuse(_context: CallContext) -> web.Response:
        raise ServiceError(
            "InvalidAction",
            f"Could not find operation {action} for version {version}",
            400,
        )

    return refuse


async def _assume_role(context: CallContext, params: Mapping[str, str]) -> web.Response:
    """Mint tagged temporary credentials and remember what they were minted for."""
    request = _decoded_and_valid("AssumeRole", params)
    role = _assumable_role(context, str(request["RoleArn"]))

    tags = _tags(request.get("Tags"))
    source_identity = _optional_text(request.get("SourceIdentity"))
    _check_semantics(tags, source_identity)
    packed_size = _packed_policy_size(request, tags)

    session_name = str(request["RoleSessionName"])
    duration = _int_member(request, "DurationSeconds", _DEFAULT_DURATION_SECONDS)
    credentials = mint_temporary_credentials(
        _int_member(request, "MinimumSessionTokenSize", 0)
    )
    session = IssuedSession(
        access_key_id=credentials.access_key_id,
        role_arn=role.arn,
        role_session_name=session_name,
        assumed_role_id=f"{role.role_id}:{session_name}",
        assumed_role_arn=role.assumed_role_arn(session_name),
        account_id=role.account,
        tags=tags,
        transitive_tag_keys=tuple(_strings(request.get("TransitiveTagKeys"))),
        source_identity=source_identity,
        expiration=context.state.clock() + timedelta(seconds=duration),
    )
    context.state.remember_session(session)

    result = {
        "Credentials": {
            "AccessKeyId": credentials.access_key_id,
            "SecretAccessKey": credentials.secret_access_key,
            "SessionToken": credentials.session_token,
            "Expiration": session.expiration,
        },
        "AssumedRoleUser": {
            "AssumedRoleId": session.assumed_role_id,
            "Arn": session.assumed_role_arn,
        },
        "PackedPolicySize": packed_size,
        "SourceIdentity": source_identity,
    }
    return _xml_response("AssumeRole", result, context.request_id)


@dataclass(frozen=True, slots=True)
class _Role:
    """An IAM role, as named by the RoleArn AssumeRole was called with."""

    arn: str
    partition: str
    account: str
    name: str

    @property
    def role_id(self) -> str:
        """Return the role's unique id, stable as AWS keeps it."""
        return unique_id("AROA", self.arn)

    def assumed_role_arn(self, session_name: str) -> str:
        """Return the ARN of a session of this role."""
        return (
            f"arn:{self.partition}:sts::{self.account}:"
            f"assumed-role/{self.name}/{session_name}"
        )


def _assumable_role(context: CallContext, role_arn: str) -> _Role:
    """Parse the role ARN and refuse roles outside the configured set."""
    parsed = _ROLE_ARN.fullmatch(role_arn)
    if parsed is None:
        raise _validation_error(f"{role_arn} is invalid: RoleArn must name an IAM role")

    allowed = context.state.role_arns
    if allowed is not None and role_arn not in allowed:
        caller_arn = _caller(context.state, context.credential.access_key_id).arn
        raise ServiceError(
            "AccessDenied",
            f"User: {caller_arn} is not authorized to perform: sts:AssumeRole "
            f"on resource: {role_arn}",
            403,
        )

    return _Role(role_arn, parsed["partition"], parsed["account"], parsed["name"])


async def _get_caller_identity(
    context: CallContext, params: Mapping[str, str]
) -> web.Response:
    """Name the identity behind the signing key: an issued session or a user."""
    _decoded_and_valid("GetCallerIdentity", params)
    caller = _caller(context.state, context.credential.access_key_id)

    result = {"UserId": caller.user_id, "Account": caller.account, "Arn": caller.arn}
    return _xml_response("GetCallerIdentity", result, context.request_id)


_OPERATIONS: Final = {
    "AssumeRole": _assume_role,
    "GetCallerIdentity": _get_caller_identity,
}


@dataclass(frozen=True, slots=True)
class _Caller:
    """An identity as GetCallerIdentity reports it."""

    user_id: str
    account: str
    arn: str


def _caller(state: StandinState, access_key_id: str) -> _Caller:
    """Identify a signing key: the session it was issued for, else a fixed user.

    Keys the stand-in did not issue (the long-term keys a service signs
    AssumeRole with) all belong to one IAM user of the configured account.
    """
    session = state.session(access_key_id)

    if session is not None:
        return _Caller(
            session.assumed_role_id, session.account_id, session.assumed_role_arn
        )

    user_arn = f"arn:aws:iam::{state.account_id}:user/standin"
    return _Caller(unique_id("AIDA", user_arn), state.account_id, user_arn)


def _decoded_and_valid(
    operation_name: str, params: Mapping[str, str]
) -> dict[str, object]:
    """Decode the operation's parameters and apply the model's constraints."""
    input_shape = operation_model(STS, operation_name).input_shape
    if input_shape is None:
        return {}

    request = decode_query(input_shape, params)
    violations = validate(input_shape, request)

    if violations:
        raise _validation_error(summarize(violations))

    return request


def _check_semantics(tags: tuple[Tag, ...], source_identity: str | None) -> None:
    """Enforce the AssumeRole rules AWS documents but the model cannot express."""
    if source_identity is not None and source_identity.lower().startswith("aws:"):
        raise _validation_error(
            "Invalid SourceIdentity: the prefix 'aws:' is reserved for AWS use"
        )

    folded = [tag.key.casefold() for tag in tags]
    if len(set(folded)) != len(folded):
        raise _validation_error(
            "Duplicate tag keys found. Please note that Tag keys are case insensitive."
        )


def _packed_policy_size(
    request: Mapping[str, object], tags: tuple[Tag, ...]
) -> int | None:
    """Return the percentage of the packed budget used; None if nothing is packed.

    AWS reports PackedPolicySize only when the request passes session
    policies or tags, and refuses the call when they exceed its limit.
    """
    policy = _optional_text(request.get("Policy"))
    policy_arns = request.get("PolicyArns")

    if policy is None and not policy_arns and not tags:
        return None

    if policy is not None:
        _require_json_policy(policy)

    packed = json.dumps(
        [policy, policy_arns, [[tag.key, tag.value] for tag in tags]],
        separators=(",", ":"),
    ).encode()
    size = math.ceil(100 * len(zlib.compress(packed, 9)) / _PACKED_POLICY_BUDGET_BYTES)

    if size > 100:
        raise modeled_error(
            STS,
            "PackedPolicyTooLargeException",
            f"Packed size of session policies and tags consumes {size}% of "
            "allotted space",
        )

    return size


def _require_json_policy(policy: str) -> None:
    """Refuse an inline session policy that is not a JSON object."""
    try:
        document = json.loads(policy)
    except ValueError:
        document = None

    if not isinstance(document, dict):
        raise modeled_error(
            STS,
            "MalformedPolicyDocumentException",
            "The policy is not in the valid JSON format.",
        )


def _tags(value: object) -> tuple[Tag, ...]:
    """Read validated `Tags` into Tag values."""
    if not isinstance(value, list):
        return ()

    return tuple(
        Tag(str(item["Key"]), str(item.get("Value", "")))
        for item in value
        if isinstance(item, dict)
    )


def _int_member(request: Mapping[str, object], name: str, default: int) -> int:
    """Read a validated optional integer member."""
    value = request.get(name)

    return value if isinstance(value, int) else default


def _strings(value: object) -> list[str]:
    """Read a validated list of strings."""
    return [str(item) for item in value] if isinstance(value, list) else []


def _optional_text(value: object) -> str | None:
    """Read a validated optional string."""
    return value if isinstance(value, str) else None


def _validation_error(message: str) -> ServiceError:
    """Build STS's error for a request that breaks a rule."""
    return ServiceError("ValidationError", message, 400)


def _xml_response(
    operation_name: str, result: Mapping[str, object], request_id: str
) -> web.Response:
    """Write a successful answer."""
    body = render_result(operation_model(STS, operation_name), result, request_id)

    return web.Response(body=body, content_type=_CONTENT_TYPE)
