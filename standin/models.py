"""Botocore's service models, the single source of each API's contract.

The stand-in validates requests and shapes responses from the same JSON models
that the clients use, so a constraint AWS adds in a model update reaches the
stand-in without anyone transcribing it.
"""

from __future__ import annotations

import functools
from typing import Final

from botocore.loaders import create_loader
from botocore.model import OperationModel, ServiceModel

from standin.errors import ServiceError

STS: Final = "sts"
CHIME_SDK_IDENTITY: Final = "chime-sdk-identity"


@functools.cache
def service_model(service_name: str) -> ServiceModel:
    """Load a service's model once per process; parsing it costs milliseconds."""
    loader = create_loader()
    description = loader.load_service_model(service_name, "service-2")

    return ServiceModel(description, service_name=service_name)


def operation_model(service_name: str, operation_name: str) -> OperationModel:
    """Return one operation of a service's model."""
    return service_model(service_name).operation_model(operation_name)


def modeled_error(service_name: str, shape_name: str, message: str) -> ServiceError:
    """Build an error the model declares, with the code and status it gives.

    The query protocol's code may differ from the shape's name
    (`MalformedPolicyDocumentException` goes on the wire as
    `MalformedPolicyDocument`); rest-json uses the shape's name.
    """
    shape = service_model(service_name).shape_for(shape_name)
    error = shape.metadata["error"]
    status = int(error["httpStatusCode"])

    return ServiceError(
        code=str(error.get("code", shape.name)),
        message=message,
        status=status,
        sender_fault=status < 500,
    )
