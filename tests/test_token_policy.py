"""Which tokens the operator accepts: client ids, token kinds, required claims, CORS."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from service.app import create_app
from tests.support import AUDIENCE, Client, bearer, hs256_token, settings_for

if TYPE_CHECKING:
    from tests.conftest import AiohttpClient, Standin

CLIENT_ID = "3n4b5urk1ft4fl3mg5e62d9ado"


@pytest.fixture
async def cognito_client(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> Client:
    """An app set up for Cognito access tokens: client_id and token_use, no aud."""
    del standin
    settings = settings_for(
        jwt_secret=hs256_secret,
        jwt_audience=(),
        jwt_client_id=CLIENT_ID,
        jwt_token_use="access",
        jwt_required_claims=(("cognito:groups", "chat"),),
    )
    return await aiohttp_client(create_app(settings))


def _access_token(secret: str, **overrides: object) -> str:
    claims: dict[str, object] = {
        "aud": None,
        "client_id": CLIENT_ID,
        "token_use": "access",
        "cognito:groups": ["admins", "chat"],
    }
    claims.update(overrides)
    return hs256_token(secret, "c0ffee00-1111-4222-8333-444455556666", **claims)


async def test_cognito_access_token_is_accepted_by_client_id(
    cognito_client: Client, hs256_secret: str
) -> None:
    """A token with no aud signs in when its client_id is the configured one."""
    response = await cognito_client.post(
        "/v1/sign-in", headers=bearer(_access_token(hs256_secret))
    )

    assert response.status == 200


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": "another-client"},
        {"client_id": None},
        {"token_use": "id"},
        {"token_use": None},
    ],
)
async def test_cognito_token_for_another_client_or_kind_is_refused(
    cognito_client: Client, hs256_secret: str, overrides: dict[str, object]
) -> None:
    """Another client's token, or an ID token where access is wanted, is a 401."""
    response = await cognito_client.post(
        "/v1/sign-in", headers=bearer(_access_token(hs256_secret, **overrides))
    )

    assert response.status == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("groups", [["admins"], "admins", None, []])
async def test_token_without_a_required_claim_is_forbidden(
    cognito_client: Client, hs256_secret: str, groups: object
) -> None:
    """A valid token lacking the required group is a 403 insufficient_scope."""
    token = _access_token(hs256_secret, **{"cognito:groups": groups})

    response = await cognito_client.post("/v1/sign-in", headers=bearer(token))

    assert response.status == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


async def test_required_claim_may_be_a_plain_value(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> None:
    """A string claim must equal the required value exactly."""
    del standin
    settings = settings_for(
        jwt_secret=hs256_secret, jwt_required_claims=(("tenant", "acme"),)
    )
    client = await aiohttp_client(create_app(settings))

    allowed = await client.post(
        "/v1/sign-in", headers=bearer(hs256_token(hs256_secret, "u1", tenant="acme"))
    )
    refused = await client.post(
        "/v1/sign-in", headers=bearer(hs256_token(hs256_secret, "u1", tenant="acm"))
    )

    assert (allowed.status, refused.status) == (200, 403)


async def test_audience_may_be_any_of_a_list(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> None:
    """A token whose aud list names one configured audience is accepted."""
    del standin
    settings = settings_for(jwt_secret=hs256_secret, jwt_audience=("web", AUDIENCE))
    client = await aiohttp_client(create_app(settings))
    token = hs256_token(hs256_secret, "u2", aud=["other", AUDIENCE])

    response = await client.post("/v1/sign-in", headers=bearer(token))

    assert response.status == 200


async def test_cors_preflight_allows_only_configured_origins(
    aiohttp_client: AiohttpClient, standin: Standin, hs256_secret: str
) -> None:
    """A configured origin gets its preflight answered; another origin does not."""
    del standin
    origin = "https://chat.example.com"
    settings = settings_for(jwt_secret=hs256_secret, cors_allowed_origins=(origin,))
    client = await aiohttp_client(create_app(settings))
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }

    allowed = await client.options(
        "/v1/sign-in", headers={"Origin": origin, **preflight}
    )
    refused = await client.options(
        "/v1/sign-in", headers={"Origin": "https://evil.example.com", **preflight}
    )
    signed_in = await client.post(
        "/v1/sign-in",
        headers={"Origin": origin, **bearer(hs256_token(hs256_secret, "u3"))},
    )

    assert allowed.status == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == origin
    assert "AUTHORIZATION" in allowed.headers["Access-Control-Allow-Headers"].upper()
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert signed_in.headers["Access-Control-Allow-Origin"] == origin
    assert "Access-Control-Allow-Credentials" not in signed_in.headers
