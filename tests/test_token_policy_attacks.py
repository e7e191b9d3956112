"""Attacks on the operator's policy: client ids, token kinds, required claims, CORS.

A token for another client, of another kind, or with a required claim only
resembling the wanted value must be refused; a 403 must only ever follow a token
that is otherwise valid; and only the configured browser origins may call sign-in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import jwt
import pytest

from service.app import create_app
from service.settings import Settings
from tests.support import (
    APP_INSTANCE_ARN,
    AUDIENCE,
    ISSUER,
    ROLE_ARN,
    Client,
    bearer,
    claims_for,
    hs256_token,
    settings_for,
)

if TYPE_CHECKING:
    from aiohttp import ClientResponse

    from tests.conftest import AiohttpClient, Standin

CLIENT_ID: Final = "app-client-1"
GROUPS: Final = "cognito:groups"
ORIGIN: Final = "https://chat.example.test"


async def _status(client: Client, token: str) -> int:
    return (await client.post("/v1/sign-in", headers=bearer(token))).status


@pytest.fixture
async def access_client(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> Client:
    """Set up for Cognito access tokens: client_id, token_use and a required group."""
    del standin
    settings = settings_for(
        jwt_secret=hs256_secret,
        jwt_audience=(),
        jwt_client_id=CLIENT_ID,
        jwt_token_use="access",
        jwt_required_claims=((GROUPS, "chat"),),
    )
    return await aiohttp_client(create_app(settings))


def _access_token(secret: str, **overrides: Any) -> str:
    claims: dict[str, Any] = {
        "aud": None,
        "client_id": CLIENT_ID,
        "token_use": "access",
        GROUPS: ["chat"],
    }
    claims.update(overrides)
    return hs256_token(secret, "c0ffee00-1111-4222-8333-444455556666", **claims)


# --- client_id ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "client_id",
    [
        "app-client-2",
        "app-client-",
        "app-client-1 ",
        "APP-CLIENT-1",
        "",
        [CLIENT_ID],
        {"id": CLIENT_ID},
        1,
    ],
    ids=repr,
)
async def test_client_id_variants_are_refused(
    access_client: Client, hs256_secret: str, client_id: object
) -> None:
    """Only the exact configured client_id, as a string, stands in for aud."""
    token = _access_token(hs256_secret, client_id=client_id)

    response = await access_client.post("/v1/sign-in", headers=bearer(token))

    assert response.status == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


async def test_client_id_in_aud_does_not_replace_the_client_id_claim(
    access_client: Client, hs256_secret: str
) -> None:
    """With no audience configured, an aud naming the client id is not enough."""
    token = _access_token(hs256_secret, client_id=None, aud=CLIENT_ID)

    assert await _status(access_client, token) == 401


async def test_client_id_does_not_override_an_aud_for_another_service(
    access_client: Client, hs256_secret: str
) -> None:
    """A token whose aud names another API is refused even with our client_id.

    RFC 7519 4.1.3: when aud is present and does not name the recipient, the token
    MUST be rejected. RFC 9068 access tokens carry both claims: one our client got
    for another resource server must not sign in here.
    """
    token = _access_token(hs256_secret, aud="https://payments.example.test")

    assert await _status(access_client, token) == 401


# --- token_use ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token_use", ["id", "ID", "Access", "access ", "", ["access"], True], ids=repr
)
async def test_token_use_variants_are_refused(
    access_client: Client, hs256_secret: str, token_use: object
) -> None:
    """An ID token, or any other spelling of access, is refused for access-only."""
    token = _access_token(hs256_secret, token_use=token_use)

    assert await _status(access_client, token) == 401


async def test_token_use_id_refuses_access_tokens(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> None:
    """Configured for ID tokens, an access token with the right aud is refused."""
    del standin
    settings = settings_for(jwt_secret=hs256_secret, jwt_token_use="id")
    client = await aiohttp_client(create_app(settings))

    id_token = hs256_token(hs256_secret, "alice", token_use="id")
    access_token = hs256_token(hs256_secret, "alice", token_use="access")
    no_kind = hs256_token(hs256_secret, "alice")

    assert await _status(client, id_token) == 200
    assert await _status(client, access_token) == 401
    assert await _status(client, no_kind) == 401


# --- Required claims ------------------------------------------------------------------


@pytest.mark.parametrize(
    "groups",
    [["chat"], ["admins", "chat"], "chat", ["chat", "chat"]],
    ids=repr,
)
async def test_required_claim_held_signs_in(
    access_client: Client, hs256_secret: str, groups: object
) -> None:
    """The wanted value, alone, among others, or as a plain string, is enough."""
    token = _access_token(hs256_secret, **{GROUPS: groups})

    assert await _status(access_client, token) == 200


@pytest.mark.parametrize(
    "groups",
    [
        "chatty",
        "cha",
        "xchat",
        "chat ",
        "Chat",
        "admins,chat",
        ["Chat"],
        ["chatty"],
        [["chat"]],
        {"chat": True},
        {"groups": ["chat"]},
        True,
        1,
        "",
        [],
    ],
    ids=repr,
)
async def test_required_claim_lookalikes_are_forbidden(
    access_client: Client, hs256_secret: str, groups: object
) -> None:
    """Substrings, other cases, nested lists and objects never satisfy chat."""
    token = _access_token(hs256_secret, **{GROUPS: groups})

    response = await access_client.post("/v1/sign-in", headers=bearer(token))

    await _assert_insufficient_scope(response)


async def test_required_claims_all_must_hold(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> None:
    """With two required claims, holding one of them is a 403."""
    del standin
    settings = settings_for(
        jwt_secret=hs256_secret,
        jwt_required_claims=((GROUPS, "chat"), ("tenant", "acme")),
    )
    client = await aiohttp_client(create_app(settings))

    both = hs256_token(hs256_secret, "u", **{GROUPS: ["chat"], "tenant": "acme"})
    group_only = hs256_token(hs256_secret, "u", **{GROUPS: ["chat"]})
    tenant_only = hs256_token(hs256_secret, "u", tenant="acme")

    assert await _status(client, both) == 200
    assert await _status(client, group_only) == 403
    assert await _status(client, tenant_only) == 403


async def _assert_insufficient_scope(response: ClientResponse) -> None:
    assert response.status == 403, await response.text()
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="')
    assert 'error="insufficient_scope"' in challenge
    detail = (await response.json())["detail"]
    assert "chat" not in detail  # the wanted value is not handed to the caller
    assert GROUPS not in detail


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": 1},
        {"iss": "https://evil.test/"},
        {"client_id": "app-client-2"},
        {"token_use": "id"},
        {"sub": 42},
    ],
    ids=["expired", "issuer", "client", "kind", "user-id"],
)
async def test_required_claim_missing_on_an_invalid_token_is_401_not_403(
    access_client: Client, hs256_secret: str, overrides: dict[str, object]
) -> None:
    """A 403 is for valid tokens only: an invalid one lacking the group is a 401."""
    token = _access_token(hs256_secret, **{GROUPS: ["admins"], **overrides})

    assert await _status(access_client, token) == 401


async def test_required_claim_on_a_forged_token_is_401_not_403(
    access_client: Client,
) -> None:
    """A forged token never learns whether it would have held the required claims."""
    claims = claims_for(
        "mallory", aud=None, client_id=CLIENT_ID, token_use="access", **{GROUPS: []}
    )
    forged = jwt.encode(claims, "z" * 48, algorithm="HS256")

    assert await _status(access_client, forged) == 401


def test_required_claims_setting_parses_pairs() -> None:
    """JWT_REQUIRED_CLAIMS becomes (claim, value) pairs, colons and all."""
    settings = Settings.from_environ(
        {
            "USER_ROLE_ARN": ROLE_ARN,
            "CHIME_APP_INSTANCE_ARN": APP_INSTANCE_ARN,
            "JWT_ISSUER": ISSUER,
            "JWT_CLIENT_ID": CLIENT_ID,
            "JWT_TOKEN_USE": "access",
            "JWT_REQUIRED_CLAIMS": " cognito:groups=chat , tenant=acme ",
            "JWT_JWKS_URL": "https://idp.example.test/jwks.json",
        }
    )

    assert settings.jwt_audience == ()
    assert settings.jwt_client_id == CLIENT_ID
    assert settings.jwt_token_use == "access"
    assert settings.jwt_required_claims == ((GROUPS, "chat"), ("tenant", "acme"))


# --- CORS -----------------------------------------------------------------------------

_PREFLIGHT: Final = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization",
}


@pytest.fixture
async def cors_client(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> Client:
    """The app allowing one browser origin."""
    del standin
    settings = settings_for(jwt_secret=hs256_secret, cors_allowed_origins=(ORIGIN,))
    return await aiohttp_client(create_app(settings))


@pytest.mark.parametrize(
    "origin",
    [
        "https://chat.example.test.evil.test",
        "https://evil.chat.example.test",
        "https://chat.example.test:444",
        "http://chat.example.test",
        "https://CHAT.EXAMPLE.TEST.evil",
        "https://chat.example.tes",
        "null",
        "*",
        "",
    ],
)
async def test_cors_preflight_from_other_origins_is_not_allowed(
    cors_client: Client, origin: str
) -> None:
    """Lookalike origins, null and the wildcard never get an allow-origin back."""
    response = await cors_client.options(
        "/v1/sign-in", headers={"Origin": origin, **_PREFLIGHT}
    )

    assert response.status != 500
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Headers" not in response.headers


async def test_cors_preflight_allows_exactly_the_origin_and_no_credentials(
    cors_client: Client,
) -> None:
    """The configured origin is echoed, never a wildcard, and credentials stay off."""
    response = await cors_client.options(
        "/v1/sign-in", headers={"Origin": ORIGIN, **_PREFLIGHT}
    )

    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in response.headers["Access-Control-Allow-Methods"].upper()
    assert "AUTHORIZATION" in response.headers["Access-Control-Allow-Headers"].upper()
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_cors_refused_sign_in_is_readable_by_the_allowed_origin(
    cors_client: Client,
) -> None:
    """A browser page on the origin can read a refusal too, not just a success."""
    response = await cors_client.post(
        "/v1/sign-in", headers={"Origin": ORIGIN, **bearer("not-a-token")}
    )

    assert response.status == 401
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_cors_is_off_without_configured_origins(
    client: Client, hs256_secret: str
) -> None:
    """With no origins configured, neither preflight nor sign-in allows any origin."""
    preflight = await client.options(
        "/v1/sign-in", headers={"Origin": ORIGIN, **_PREFLIGHT}
    )
    signed_in = await client.post(
        "/v1/sign-in",
        headers={"Origin": ORIGIN, **bearer(hs256_token(hs256_secret, "alice"))},
    )

    assert preflight.status != 500
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert signed_in.status == 200
    assert "Access-Control-Allow-Origin" not in signed_in.headers


async def test_cors_is_not_offered_on_other_routes(cors_client: Client) -> None:
    """Only sign-in is opened to the origin; metrics and probes are not."""
    response = await cors_client.get("/metrics", headers={"Origin": ORIGIN})

    assert "Access-Control-Allow-Origin" not in response.headers


async def test_audience_empty_refuses_every_aud_without_client_id(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> None:
    """Neither audience nor client id configured (tests only): nothing signs in."""
    del standin
    settings = settings_for(jwt_secret=hs256_secret, jwt_audience=())
    client = await aiohttp_client(create_app(settings))

    assert await _status(client, hs256_token(hs256_secret, "u", aud=AUDIENCE)) == 401
    assert await _status(client, hs256_token(hs256_secret, "u", aud=None)) == 401
