"""A local stand-in for AWS STS and Chime SDK Identity, for tests and load tests.

No emulator covers Chime SDK Identity, so this package answers the calls the
service makes (AssumeRole, GetCallerIdentity, Create/Describe/Update
AppInstanceUser) over the real wire protocols. Unmodified aiobotocore clients
reach it through `endpoint_url` or `AWS_ENDPOINT_URL`; requests are validated
against botocore's own service models and answered with AWS's error shapes.
`StandinState` records every call and issued session and carries a per-API
fault plan. Never deploy it: it accepts any signature.
"""

from __future__ import annotations

from standin.app import create_standin_app
from standin.faults import (
    FAULTABLE_APIS,
    ExponentialLatency,
    FaultError,
    FaultInjector,
    FaultSpec,
    FixedLatency,
    UniformLatency,
)
from standin.keys import STATE_KEY
from standin.state import (
    OUTCOME_ABANDONED,
    OUTCOME_DROP,
    OUTCOME_HANG,
    OUTCOME_OK,
    AppInstanceUser,
    IssuedSession,
    StandinState,
    Tag,
)

__all__ = [
    "FAULTABLE_APIS",
    "OUTCOME_ABANDONED",
    "OUTCOME_DROP",
    "OUTCOME_HANG",
    "OUTCOME_OK",
    "STATE_KEY",
    "AppInstanceUser",
    "ExponentialLatency",
    "FaultError",
    "FaultInjector",
    "FaultSpec",
    "FixedLatency",
    "IssuedSession",
    "StandinState",
    "Tag",
    "UniformLatency",
    "create_standin_app",
]
