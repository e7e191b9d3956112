"""Per-API fault plans: added latency and shares of failed, hung or cut calls.

A resilient client is only proven against a dependency that misbehaves the way
AWS does: slow answers, throttling, 5xx, connections that never answer and
connections that drop. Each API gets its own `FaultSpec`; for every call the
`FaultInjector` draws one latency sample and one uniform number from a single
seedable `random.Random`, so the same seed and the same call order give the
same faults, which keeps tests deterministic.

A spec is written three ways, all equivalent: in Python (`FaultSpec(...)`), as
JSON for the admin endpoint (`{"latency": {"distribution": "uniform", "low":
0.01, "high": 0.05}, "throttle": 0.1}`) and as text for the command line
(`AssumeRole:latency=uniform:0.01:0.05,throttle=0.1`).
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from standin.jsontypes import JsonObject, JsonValue

FAULTABLE_APIS: Final = (
    "AssumeRole",
    "GetCallerIdentity",
    "CreateAppInstanceUser",
    "DescribeAppInstanceUser",
    "UpdateAppInstanceUser",
)
"""The operations the stand-in serves, each of which takes its own faults."""

ALL_APIS: Final = "*"
"""Stands for every API in the command-line syntax."""

_SHARES: Final = ("throttle", "server_error", "hang", "drop")


class FaultError(ValueError):
    """A fault specification that cannot be applied."""


@dataclass(frozen=True, slots=True)
class FixedLatency:
    """The same delay before every answer."""

    seconds: float

    def __post_init__(self) -> None:
        """Refuse a negative delay, which asyncio would silently treat as none."""
        _require_non_negative("seconds", self.seconds)

    def sample(self, _rng: random.Random) -> float:
        """Return the fixed delay; drawing nothing keeps other draws aligned."""
        return self.seconds

    def to_json(self) -> JsonObject:
        """Describe the latency for the admin endpoint."""
        return {"distribution": "fixed", "seconds": self.seconds}


@dataclass(frozen=True, slots=True)
class UniformLatency:
    """A delay drawn evenly between two bounds."""

    low: float
    high: float

    def __post_init__(self) -> None:
        """Refuse bounds that are negative or reversed."""
        _require_non_negative("low", self.low)

        if self.high < self.low:
            raise FaultError(f"uniform latency needs low <= high, got {self}")

    def sample(self, rng: random.Random) -> float:
        """Draw a delay in [low, high]."""
        return rng.uniform(self.low, self.high)

    def to_json(self) -> JsonObject:
        """Describe the latency for the admin endpoint."""
        return {"distribution": "uniform", "low": self.low, "high": self.high}


@dataclass(frozen=True, slots=True)
class ExponentialLatency:
    """A delay with a long tail, like a loaded service's response times."""

    mean: float

    def __post_init__(self) -> None:
        """Refuse a non-positive mean, for which no exponential exists."""
        if not self.mean > 0:
            raise FaultError(f"exponential latency needs a mean > 0, got {self.mean}")

    def sample(self, rng: random.Random) -> float:
        """Draw a delay with the configured mean."""
        return rng.expovariate(1 / self.mean)

    def to_json(self) -> JsonObject:
        """Describe the latency for the admin endpoint."""
        return {"distribution": "exponential", "mean": self.mean}


Latency = FixedLatency | UniformLatency | ExponentialLatency


class FaultAction(enum.Enum):
    """What happens to one call after its delay."""

    RESPOND = "respond"
    THROTTLE = "throttle"
    SERVER_ERROR = "server_error"
    SERVICE_UNAVAILABLE = "service_unavailable"
    HANG = "hang"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """The fault drawn for one call."""

    delay: float
    action: FaultAction


NO_FAULT: Final = FaultDecision(0.0, FaultAction.RESPOND)


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """The faults of one API: a latency and the share of each failure mode.

    The shares are probabilities in [0, 1] whose sum is at most 1; what is
    left is the share of normal answers. Half of the `server_error` share
    answers 500 and half 503, because AWS clients meet both.
    """

    latency: Latency | None = None
    throttle: float = 0.0
    server_error: float = 0.0
    hang: float = 0.0
    drop: float = 0.0

    def __post_init__(self) -> None:
        """Refuse shares that are not probabilities or add up past one."""
        for name in _SHARES:
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise FaultError(f"{name} must be within [0, 1], got {share}")

        if sum(getattr(self, name) for name in _SHARES) > 1.0 + 1e-9:
            raise FaultError(f"fault shares add up to more than 1: {self}")

    @property
    def is_inert(self) -> bool:
        """Tell whether the spec changes nothing, so it need not be stored."""
        return self.latency is None and not any(getattr(self, name) for name in _SHARES)

    def decide(self, rng: random.Random) -> FaultDecision:
        """Draw this call's delay and action."""
        delay = self.latency.sample(rng) if self.latency is not None else 0.0
        draw = rng.random()

        bands = (
            (self.throttle, FaultAction.THROTTLE),
            (self.server_error / 2, FaultAction.SERVER_ERROR),
            (self.server_error / 2, FaultAction.SERVICE_UNAVAILABLE),
            (self.hang, FaultAction.HANG),
            (self.drop, FaultAction.DROP),
        )
        for share, action in bands:
            if draw < share:
                return FaultDecision(delay, action)
            draw -= share

        return FaultDecision(delay, FaultAction.RESPOND)

    def to_json(self) -> JsonObject:
        """Describe the spec for the admin endpoint, in `from_json`'s format."""
        described: JsonObject = {
            "latency": self.latency.to_json() if self.latency is not None else None
        }
        for name in _SHARES:
            described[name] = getattr(self, name)

        return described

    @classmethod
    def from_json(cls, document: JsonValue) -> FaultSpec:
        """Build a spec from the admin endpoint's JSON; unknown keys are errors."""
        if not isinstance(document, dict):
            raise FaultError("a fault spec must be a JSON object")

        known = {spec_field.name for spec_field in fields(cls)}
        unknown = sorted(set(document) - known)
        if unknown:
            raise FaultError(f"unknown fault settings: {', '.join(unknown)}")

        latency_document = document.get("latency")
        latency = (
            None if latency_document is None else latency_from_json(latency_document)
        )
        return cls(
            latency=latency,
            throttle=_number(document.get("throttle", 0.0), "throttle"),
            server_error=_number(document.get("server_error", 0.0), "server_error"),
            hang=_number(document.get("hang", 0.0), "hang"),
            drop=_number(document.get("drop", 0.0), "drop"),
        )


def latency_from_json(document: JsonValue) -> Latency:
    """Build a latency from `{"distribution": ..., <its parameters>}`."""
    if not isinstance(document, dict):
        raise FaultError("latency must be a JSON object")

    distribution = document.get("distribution")

    if distribution == "fixed":
        return FixedLatency(_number(document.get("seconds"), "seconds"))

    if distribution == "uniform":
        return UniformLatency(
            _number(document.get("low"), "low"), _number(document.get("high"), "high")
        )

    if distribution == "exponential":
        return ExponentialLatency(_number(document.get("mean"), "mean"))

    raise FaultError(
        "latency distribution must be fixed, uniform or exponential, "
        f"got {distribution!r}"
    )


def parse_fault_option(text: str) -> tuple[tuple[str, ...], FaultSpec]:
    """Parse the command line's `API:key=value,...` into the APIs and their spec.

    `API` is one of FAULTABLE_APIS or `*` for all of them. Keys are those of
    FaultSpec; `latency` takes `fixed:S`, `uniform:LOW:HIGH` or
    `exponential:MEAN`, in seconds.
    """
    api, separator, settings = text.partition(":")
    if not separator:
        raise FaultError(f"expected API:key=value[,key=value...], got {text!r}")

    apis = FAULTABLE_APIS if api == ALL_APIS else (validate_api(api),)
    document: JsonObject = {}

    for setting in filter(None, settings.split(",")):
        key, equals, value = (part.strip() for part in setting.partition("="))
        if not equals:
            raise FaultError(f"expected key=value, got {setting!r}")

        if key == "latency":
            document[key] = _latency_text_to_json(value)
        elif key in _SHARES:
            document[key] = _float_text(value, key)
        else:
            document[key] = value  # from_json names it as unknown

    return apis, FaultSpec.from_json(document)


def validate_api(api: str) -> str:
    """Return `api` if the stand-in serves it, so typos fail loudly."""
    if api not in FAULTABLE_APIS:
        raise FaultError(f"unknown API {api!r}; expected one of {FAULTABLE_APIS}")

    return api


@dataclass(slots=True)
class FaultInjector:
    """The current fault plan of every API and the random source it draws from.

    Calls to an API without a spec draw nothing, so enabling faults on one API
    does not shift the sequence another API sees.
    """

    seed: int | None = None
    _specs: dict[str, FaultSpec] = field(default_factory=dict, init=False)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        """Start the random sequence from the seed (or from entropy if none)."""
        self._rng = random.Random(self.seed)  # noqa: S311 - simulates load, not secrets

    def reseed(self, seed: int | None) -> None:
        """Restart the random sequence, so a test can replay the same faults."""
        self.seed = seed
        self._rng = random.Random(seed)  # noqa: S311 - simulates load, not secrets

    def set(self, api: str, spec: FaultSpec) -> None:
        """Replace one API's faults; an inert spec removes them."""
        validate_api(api)

        if spec.is_inert:
            self._specs.pop(api, None)
        else:
            self._specs[api] = spec

    def replace(self, specs: Mapping[str, FaultSpec]) -> None:
        """Replace the whole plan; APIs left out get no faults."""
        for api in specs:
            validate_api(api)

        self._specs = {api: spec for api, spec in specs.items() if not spec.is_inert}

    def clear(self) -> None:
        """Remove every fault."""
        self._specs.clear()

    def spec(self, api: str) -> FaultSpec:
        """Return one API's faults (an inert spec when it has none)."""
        return self._specs.get(api, FaultSpec())

    def decide(self, api: str) -> FaultDecision:
        """Draw the fault for one call to `api`."""
        spec = self._specs.get(api)

        if spec is None:
            return NO_FAULT

        return spec.decide(self._rng)

    def to_json(self) -> JsonObject:
        """Describe the plan: the seed and each faulted API's spec."""
        return {
            "seed": self.seed,
            "faults": {
                api: spec.to_json() for api, spec in sorted(self._specs.items())
            },
        }


def specs_from_json(document: JsonValue) -> dict[str, FaultSpec]:
    """Build a whole plan from `{"<API>": <spec>, ...}`."""
    if not isinstance(document, dict):
        raise FaultError("faults must be a JSON object keyed by API name")

    return {
        validate_api(api): FaultSpec.from_json(spec) for api, spec in document.items()
    }


def merge_options(options: Iterable[str]) -> dict[str, FaultSpec]:
    """Combine repeated `--fault` options; a later option for an API wins."""
    specs: dict[str, FaultSpec] = {}

    for option in options:
        apis, spec = parse_fault_option(option)
        for api in apis:
            specs[api] = spec

    return specs


def _latency_text_to_json(text: str) -> JsonObject:
    """Turn `fixed:S`, `uniform:LOW:HIGH` or `exponential:MEAN` into JSON."""
    distribution, *values = text.split(":")
    parameters = {
        "fixed": ("seconds",),
        "uniform": ("low", "high"),
        "exponential": ("mean",),
    }.get(distribution)

    if parameters is None or len(values) != len(parameters):
        raise FaultError(
            "latency must be fixed:S, uniform:LOW:HIGH or exponential:MEAN, "
            f"got {text!r}"
        )

    document: JsonObject = {"distribution": distribution}
    for name, value in zip(parameters, values, strict=True):
        document[name] = _float_text(value, name)

    return document


def _float_text(value: JsonValue, name: str) -> float:
    """Parse a command-line number."""
    try:
        number = float(str(value))
    except ValueError:
        raise FaultError(f"{name} must be a number, got {value!r}") from None

    return _number(number, name)


def _number(value: JsonValue, name: str) -> float:
    """Accept a finite JSON number (not a boolean) as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultError(f"{name} must be a number, got {value!r}")

    if not math.isfinite(value):
        raise FaultError(f"{name} must be finite, got {value!r}")

    return float(value)


def _require_non_negative(name: str, value: float) -> None:
    """Refuse a negative or non-finite number of seconds."""
    if not (math.isfinite(value) and value >= 0):
        raise FaultError(f"{name} must be a finite number >= 0, got {value}")
