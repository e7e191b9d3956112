"""Refused sign-ins: RFC 6750 challenges and problem+json bodies, never a 500."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import jwt
import pytest

from tests.support import Client, bearer, claims_for, hs256_token

if TYPE_CHECKING:
    from tests.conftest import Standin


async def test_sign_in_without_a_token_is_challenged(client: Client) -> None:
    """No Authorization header: 401 with a bare Bearer challenge and no error code."""
    response = await client.post("/v1/sign-in")

    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="chime-sign-in"'
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["status"] == 401
    assert "code" not in body


async def test_sign_in_with_another_scheme_is_challenged(client: Client) -> None:
    """Basic credentials get the same bare challenge as none at all."""
    response = await client.post(
        "/v1/sign-in", headers={"Authorization": "Basic YWxpY2U6cGFzcw=="}
    )

    assert response.status == 401
    assert "error=" not in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Bearer a b", "Bearer\ttoken", "Bearer " + "a" * 9000],
)
async def test_sign_in_with_a_malformed_header_is_a_bad_request(
    client: Client, header: str
) -> None:
    """A Bearer header without exactly one token, or too large, is a 400."""
    response = await client.post("/v1/sign-in", headers={"Authorization": header})

    assert response.status == 400
    assert 'error="invalid_request"' in response.headers["WWW-Authenticate"]


async def test_sign_in_with_a_huge_header_is_refused_by_the_parser(
    client: Client,
) -> None:
    """A header past the parser's own bound is a 400 too, never a 500."""
    response = await client.post(
        "/v1/sign-in", headers={"Authorization": "Bearer " + "a" * 20_000}
    )

    assert response.status == 400


async def test_sign_in_with_a_token_in_the_query_is_refused(
    client: Client, hs256_secret: str
) -> None:
    """A token in the query string is never read."""
    token = hs256_token(hs256_secret, "alice")

    response = await client.post("/v1/sign-in", params={"access_token": token})

    assert response.status == 400
    assert token not in await response.text()


async def test_sign_in_scheme_is_case_insensitive(
    client: Client, hs256_secret: str
) -> None:
    """`bearer` and `BEARER` work as `Bearer` does."""
    token = hs256_token(hs256_secret, "alice")

    response = await client.post(
        "/v1/sign-in", headers={"Authorization": f"bEaReR {token}"}
    )

    assert response.status == 200


@pytest.mark.parametrize(
    ("overrides", "description"),
    [
        ({"exp": int(time.time()) - 3600}, "the token has expired"),
        ({"nbf": int(time.time()) + 3600}, "the token is not valid yet"),
        (
            {"iss": "https://idp.example.test"},
            "the token is not meant for this service",
        ),
        ({"aud": "another-service"}, "the token is not meant for this service"),
        ({"exp": None}, "the token lacks the exp claim"),
        ({"iat": None}, "the token lacks the iat claim"),
        ({"sub": None}, "the token lacks the sub claim"),
        ({"sub": 42}, "the token's sub claim is not a user id"),
        ({"sub": ""}, "the token's sub claim is not a user id"),
        (
            {"exp": str(int(time.time()) + 600)},
            "the token's exp claim is not a valid time",
        ),
    ],
)
async def test_sign_in_with_an_invalid_token_is_unauthorized(
    client: Client,
    standin: Standin,
    hs256_secret: str,
    overrides: dict[str, object],
    description: str,
) -> None:
    """Each kind of invalid token is a 401 invalid_token saying what is wrong."""
    token = hs256_token(hs256_secret, "alice", **overrides)

    response = await client.post("/v1/sign-in", headers=bearer(token))

    assert response.status == 401
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="invalid_token"' in challenge
    assert f'error_description="{description}"' in challenge
    assert (await response.json())["detail"] == description
    assert standin.state.call_count("AssumeRole") == 0


async def test_sign_in_with_a_forged_signature_is_unauthorized(client: Client) -> None:
    """A token signed with another secret is refused."""
    token = jwt.encode(claims_for("mallory"), "not-the-secret" * 4, algorithm="HS256")

    response = await client.post("/v1/sign-in", headers=bearer(token))

    assert response.status == 401
    assert (await response.json())["detail"] == "the token's signature does not verify"


@pytest.mark.parametrize("token", ["x", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", "....."])
async def test_sign_in_with_garbage_is_unauthorized(client: Client, token: str) -> None:
    """Tokens that are not JWTs at all are 401s."""
    response = await client.post("/v1/sign-in", headers=bearer(token))

    assert response.status == 401


async def test_sign_in_answers_get_with_a_problem(client: Client) -> None:
    """The wrong method is a problem+json 405 that names the allowed one."""
    response = await client.get("/v1/sign-in")

    assert response.status == 405
    assert response.content_type == "application/problem+json"
    assert response.headers["Allow"] == "POST"
