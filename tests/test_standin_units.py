"""The stand-in's building blocks, checked in-process against independent oracles."""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlencode

import pytest
from botocore.serialize import create_serializer
from hypothesis import given
from hypothesis import strategies as st

from standin.auth import (
    SignatureProblem,
    SignatureRejection,
    SignedCredential,
    read_signature,
)
from standin.cli import build_parser, main, state_from_arguments
from standin.credentials import mint_temporary_credentials, unique_id
from standin.faults import (
    FAULTABLE_APIS,
    ExponentialLatency,
    FaultAction,
    FaultError,
    FaultInjector,
    FaultSpec,
    FixedLatency,
    UniformLatency,
    merge_options,
    parse_fault_option,
)
from standin.models import CHIME_SDK_IDENTITY, STS, operation_model, service_model
from standin.patterns import compile_model_pattern, fully_matches
from standin.query import decode_query
from standin.validation import Violation, summarize

_SESSION_NAME_CHARACTERS: Final = frozenset(
    string.ascii_letters + string.digits + "_+=,.@-"
)
_UNASSIGNED: Final[tuple[Literal["Cn"]]] = ("Cn",)
_TAG_TEXT: Final = st.text(
    alphabet=st.characters(categories=("L", "N", "Zs"), include_characters="_.:/=+-@"),
    min_size=1,
    max_size=20,
)


# --- Patterns ----------------------------------------------------------------


@given(st.text(max_size=30))
def test_fully_matches_word_class_is_ascii_like_java(text: str) -> None:
    r"""`[\w+=,.@-]*` accepts exactly the ASCII characters AWS documents."""
    expected = all(character in _SESSION_NAME_CHARACTERS for character in text)

    assert fully_matches(r"[\w+=,.@-]*", text) is expected


@given(st.text(st.characters(exclude_categories=_UNASSIGNED), max_size=30))
def test_fully_matches_unicode_letter_class_accepts_any_letter(text: str) -> None:
    r"""`\p{L}` keeps its Unicode meaning after the ASCII rewrite.

    Characters Python's Unicode tables leave unassigned are excluded: `regex`
    ships newer tables, so the two disagree about them.
    """
    expected = bool(text) and all(
        unicodedata.category(character).startswith("L") for character in text
    )

    assert fully_matches(r"\p{L}+", text) is expected


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        pytest.param(".*", "one line", True, id="dot"),
        pytest.param(".*", "carriage\rreturn", False, id="dot-stops-at-cr"),
        pytest.param(".*", "line\u2028separator", False, id="dot-stops-at-ls"),
        pytest.param(r"a\.b", "a.b", True, id="escaped-dot-literal"),
        pytest.param(r"a\.b", "axb", False, id="escaped-dot-not-wildcard"),
        pytest.param(r"[]a]+", "]a]", True, id="leading-bracket-literal"),
        pytest.param(r"[^]a]+", "bc", True, id="negated-leading-bracket"),
        pytest.param(r"[\d]*", "١٢", False, id="digit-is-ascii"),
        pytest.param(r"\S+", "a\u00a0b", True, id="nbsp-is-not-java-space"),
        pytest.param(r".*\S.*", "   ", False, id="blank"),
        pytest.param("[\\u0020-\\u00FF]+", "caf\u00e9", True, id="unicode-escape"),
        pytest.param("abc", "abcd", False, id="anchored"),
    ],
)
def test_fully_matches_follows_java_semantics(
    pattern: str, text: str, matches: bool
) -> None:
    """Each construct whose meaning differs between Java and Python reads as Java."""
    assert fully_matches(pattern, text) is matches


def test_compile_model_pattern_compiles_every_pattern_of_both_models() -> None:
    """No pattern in the STS or Chime SDK Identity model fails to compile."""
    patterns = {
        shape["pattern"]
        for service in (STS, CHIME_SDK_IDENTITY)
        for shape in _shape_documents(service)
        if "pattern" in shape
    }

    compiled = [compile_model_pattern(pattern) for pattern in sorted(patterns)]

    assert len(compiled) == len(patterns) > 10


def _shape_documents(service: str) -> list[dict[str, Any]]:
    """Return the raw shape definitions of a service model."""
    model = service_model(service)

    return [model.shape_for(name).metadata for name in model.shape_names]


# --- Validation messages --------------------------------------------------------


def test_summarize_counts_and_joins_violations_as_aws_does() -> None:
    """The message counts the violations and separates them with semicolons."""
    violations = [
        Violation(
            "roleArn", "x", "Member must have length greater than or equal to 20"
        ),
        Violation("name", "secret", "Member must not be blank", sensitive=True),
    ]

    message = summarize(violations)

    assert message == (
        "2 validation errors detected: Value 'x' at 'roleArn' failed to satisfy "
        "constraint: Member must have length greater than or equal to 20; "
        "Value at 'name' failed to satisfy constraint: Member must not be blank"
    )


# --- Query protocol -------------------------------------------------------------

_ASSUME_ROLE_PARAMS: Final = st.fixed_dictionaries(
    {
        "RoleArn": st.just("arn:aws:iam::123456789012:role/chime-user"),
        "RoleSessionName": st.text(
            alphabet=sorted(_SESSION_NAME_CHARACTERS), min_size=2, max_size=64
        ),
    },
    optional={
        "DurationSeconds": st.integers(min_value=900, max_value=43200),
        "Tags": st.lists(
            st.fixed_dictionaries({"Key": _TAG_TEXT, "Value": _TAG_TEXT}), max_size=5
        ),
        "TransitiveTagKeys": st.lists(_TAG_TEXT, min_size=1, max_size=3),
        "SourceIdentity": st.text(
            alphabet=sorted(_SESSION_NAME_CHARACTERS), min_size=2, max_size=64
        ),
        "PolicyArns": st.lists(
            st.fixed_dictionaries(
                {"arn": st.just("arn:aws:iam::aws:policy/ReadOnlyAccess")}
            ),
            min_size=1,
            max_size=2,
        ),
    },
)


@given(_ASSUME_ROLE_PARAMS)
def test_decode_query_inverts_botocores_serializer(params: dict[str, Any]) -> None:
    """Whatever botocore's query serializer writes, the decoder reads back unchanged."""
    operation = operation_model(STS, "AssumeRole")
    serializer = create_serializer("query", include_validation=False)
    body = serializer.serialize_to_request(params, operation)["body"]
    form = dict(parse_qsl(urlencode(body), keep_blank_values=True))
    assert operation.input_shape is not None

    decoded = decode_query(operation.input_shape, form)

    assert decoded == params


# --- Signatures -----------------------------------------------------------------

_SIGNED: Final = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20300102/us-east-1/sts/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=abc123"
)


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        pytest.param(
            {"Authorization": _SIGNED, "X-Amz-Date": "20300102T000000Z"},
            {},
            SignedCredential("AKIDEXAMPLE", "20300102", "us-east-1", "sts"),
            id="header",
        ),
        pytest.param(
            {},
            {
                "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
                "X-Amz-Credential": "AKIDEXAMPLE/20300102/eu-west-1/chime/aws4_request",
                "X-Amz-SignedHeaders": "host",
                "X-Amz-Signature": "abc",
                "X-Amz-Date": "20300102T000000Z",
            },
            SignedCredential("AKIDEXAMPLE", "20300102", "eu-west-1", "chime"),
            id="presigned",
        ),
        pytest.param({}, {}, SignatureProblem.MISSING, id="missing"),
        pytest.param(
            {"Authorization": "Bearer abc", "X-Amz-Date": "x"},
            {},
            SignatureProblem.INCOMPLETE,
            id="other-scheme",
        ),
        pytest.param(
            {"Authorization": _SIGNED},
            {},
            SignatureProblem.INCOMPLETE,
            id="no-date",
        ),
        pytest.param(
            {
                "Authorization": _SIGNED.replace("/aws4_request", ""),
                "X-Amz-Date": "20300102T000000Z",
            },
            {},
            SignatureProblem.INCOMPLETE,
            id="short-scope",
        ),
    ],
)
def test_read_signature_accepts_only_well_formed_sigv4(
    headers: dict[str, str],
    query: dict[str, str],
    expected: SignedCredential | SignatureProblem,
) -> None:
    """SigV4 headers and presigned fields pass; anything else is refused by kind."""
    result = read_signature(headers, query)

    if isinstance(expected, SignedCredential):
        assert result == expected
    else:
        assert isinstance(result, SignatureRejection)
        assert result.problem is expected


# --- Faults ------------------------------------------------------------------------


def test_parse_fault_option_reads_every_setting() -> None:
    """The command-line syntax sets the latency and each share."""
    apis, spec = parse_fault_option(
        "AssumeRole:latency=uniform:0.01:0.05,throttle=0.1,server_error=0.2,"
        "hang=0.05,drop=0.05"
    )

    assert apis == ("AssumeRole",)
    assert spec == FaultSpec(
        latency=UniformLatency(0.01, 0.05),
        throttle=0.1,
        server_error=0.2,
        hang=0.05,
        drop=0.05,
    )


def test_parse_fault_option_star_applies_to_every_api() -> None:
    """`*` names every API the stand-in serves."""
    apis, spec = parse_fault_option("*:latency=exponential:0.02")

    assert apis == FAULTABLE_APIS
    assert spec == FaultSpec(latency=ExponentialLatency(0.02))


def test_merge_options_lets_a_later_option_win() -> None:
    """A specific option after `*` overrides that one API only."""
    specs = merge_options(["*:throttle=0.1", "AssumeRole:latency=fixed:0.5"])

    assert specs["AssumeRole"] == FaultSpec(latency=FixedLatency(0.5))
    assert specs["DescribeAppInstanceUser"] == FaultSpec(throttle=0.1)


@pytest.mark.parametrize(
    "option",
    [
        "AssumeRole",
        "NoSuchApi:throttle=1",
        "AssumeRole:throttle",
        "AssumeRole:throttle=x",
        "AssumeRole:throttle=nan",
        "AssumeRole:throttle=-0.1",
        "AssumeRole:throttle=0.7,drop=0.7",
        "AssumeRole:jitter=1",
        "AssumeRole:latency=fixed",
        "AssumeRole:latency=gamma:1",
        "AssumeRole:latency=fixed:-1",
        "AssumeRole:latency=uniform:2:1",
        "AssumeRole:latency=exponential:0",
    ],
)
def test_parse_fault_option_rejects_invalid_specs(option: str) -> None:
    """Every malformed or impossible option is a FaultError, never a silent default."""
    with pytest.raises(FaultError):
        parse_fault_option(option)


_LATENCIES: Final = st.one_of(
    st.none(),
    st.builds(FixedLatency, st.floats(min_value=0, max_value=60)),
    st.floats(min_value=0, max_value=60).flatmap(
        lambda low: st.builds(
            UniformLatency, st.just(low), st.floats(min_value=low, max_value=120)
        )
    ),
    st.builds(ExponentialLatency, st.floats(min_value=1e-3, max_value=60)),
)
_SHARE: Final = st.floats(min_value=0, max_value=0.25)
_SPECS: Final = st.builds(
    FaultSpec,
    latency=_LATENCIES,
    throttle=_SHARE,
    server_error=_SHARE,
    hang=_SHARE,
    drop=_SHARE,
)


@given(_SPECS)
def test_fault_spec_json_round_trips(spec: FaultSpec) -> None:
    """What the admin endpoint shows can be PUT back unchanged."""
    assert FaultSpec.from_json(spec.to_json()) == spec


@given(
    st.floats(min_value=0, max_value=10),
    st.floats(min_value=0, max_value=10),
    st.integers(),
)
def test_uniform_latency_samples_stay_within_bounds(
    a: float, b: float, seed: int
) -> None:
    """Uniform delays lie between the bounds, for any bounds and seed."""
    low, high = min(a, b), max(a, b)
    injector = FaultInjector(seed=seed)
    injector.set("AssumeRole", FaultSpec(latency=UniformLatency(low, high)))

    delay = injector.decide("AssumeRole").delay

    assert low <= delay <= high


def test_fault_spec_shares_match_observed_frequencies() -> None:
    """Over many seeded draws each action occurs at about its configured share."""
    injector = FaultInjector(seed=11)
    injector.set(
        "AssumeRole", FaultSpec(throttle=0.2, server_error=0.2, hang=0.1, drop=0.1)
    )

    counts = Counter(injector.decide("AssumeRole").action for _ in range(10_000))

    expected = {
        FaultAction.THROTTLE: 0.2,
        FaultAction.SERVER_ERROR: 0.1,
        FaultAction.SERVICE_UNAVAILABLE: 0.1,
        FaultAction.HANG: 0.1,
        FaultAction.DROP: 0.1,
        FaultAction.RESPOND: 0.4,
    }
    for action, share in expected.items():
        assert abs(counts[action] / 10_000 - share) < 0.02, action


def test_fault_injector_same_seed_replays_the_same_faults() -> None:
    """Reseeding replays the exact sequence of delays and actions."""
    injector = FaultInjector(seed=5)
    injector.set(
        "CreateAppInstanceUser",
        FaultSpec(latency=ExponentialLatency(0.1), throttle=0.3, drop=0.3),
    )

    first = [injector.decide("CreateAppInstanceUser") for _ in range(50)]
    injector.reseed(5)
    second = [injector.decide("CreateAppInstanceUser") for _ in range(50)]

    assert first == second
    assert len({decision.action for decision in first}) == 3


def test_fault_injector_unfaulted_apis_do_not_shift_the_sequence() -> None:
    """Calls to APIs without faults draw nothing, so they cannot reorder faults."""
    spec = FaultSpec(throttle=0.5)
    alone = FaultInjector(seed=9)
    alone.set("AssumeRole", spec)
    interleaved = FaultInjector(seed=9)
    interleaved.set("AssumeRole", spec)

    expected = [alone.decide("AssumeRole") for _ in range(20)]
    observed = []
    for _ in range(20):
        interleaved.decide("DescribeAppInstanceUser")
        observed.append(interleaved.decide("AssumeRole"))

    assert observed == expected


def test_fault_injector_refuses_unknown_apis() -> None:
    """A typo in an API name fails instead of configuring nothing."""
    injector = FaultInjector()

    with pytest.raises(FaultError):
        injector.set("AssumeRoles", FaultSpec(throttle=1.0))


# --- Credentials ------------------------------------------------------------------


def test_mint_temporary_credentials_have_aws_shapes() -> None:
    """Keys, secrets and tokens have the lengths and alphabets AWS uses."""
    credentials = mint_temporary_credentials()

    assert re.fullmatch(r"ASIA[A-Z0-9]{16}", credentials.access_key_id)
    assert re.fullmatch(r"[A-Za-z0-9+/]{40}", credentials.secret_access_key)
    assert re.fullmatch(r"[A-Za-z0-9+/]+=*", credentials.session_token)
    assert len(credentials.session_token) >= 600


def test_unique_id_is_stable_per_resource() -> None:
    """A role keeps its id across calls; different roles get different ids."""
    first = unique_id("AROA", "arn:aws:iam::123456789012:role/a")

    assert first == unique_id("AROA", "arn:aws:iam::123456789012:role/a")
    assert first != unique_id("AROA", "arn:aws:iam::123456789012:role/b")
    assert re.fullmatch(r"AROA[A-Z0-9]{17}", first)


# --- Command line -------------------------------------------------------------------


def test_state_from_arguments_builds_the_configured_state() -> None:
    """ARNs, account, seed and faults from the command line reach the state."""
    arguments = build_parser().parse_args(
        [
            "--app-instance-arn",
            "arn:aws:chime:us-east-1:123456789012:app-instance/a",
            "--app-instance-arn",
            "arn:aws:chime:us-east-1:123456789012:app-instance/b",
            "--role-arn",
            "arn:aws:iam::123456789012:role/r",
            "--account-id",
            "210987654321",
            "--seed",
            "5",
            "--fault",
            "*:throttle=0.1",
            "--fault",
            "AssumeRole:drop=0.2",
        ]
    )

    state = state_from_arguments(arguments)

    assert state.app_instance_arns == frozenset(
        {
            "arn:aws:chime:us-east-1:123456789012:app-instance/a",
            "arn:aws:chime:us-east-1:123456789012:app-instance/b",
        }
    )
    assert state.role_arns == frozenset({"arn:aws:iam::123456789012:role/r"})
    assert state.account_id == "210987654321"
    assert state.faults.seed == 5
    assert state.faults.spec("AssumeRole") == FaultSpec(drop=0.2)
    assert state.faults.spec("UpdateAppInstanceUser") == FaultSpec(throttle=0.1)


def test_state_from_arguments_defaults_accept_any_arn() -> None:
    """Without ARN options every well-formed app instance and role exists."""
    state = state_from_arguments(build_parser().parse_args([]))

    assert state.app_instance_arns is None
    assert state.role_arns is None
    assert state.faults.spec("AssumeRole") == FaultSpec()
    assert build_parser().parse_args([]).host == "127.0.0.1"


def test_main_rejects_an_invalid_fault_as_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A bad --fault stops the program with argparse's usage error, status 2."""
    with pytest.raises(SystemExit) as stopped:
        main(["--fault", "AssumeRole:throttle=2"])

    assert stopped.value.code == 2
    assert "throttle must be within [0, 1]" in capsys.readouterr().err
