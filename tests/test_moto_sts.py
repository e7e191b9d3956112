"""The STS path against moto's server, an AWS-compatible implementation of our own."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from aiobotocore.session import get_session
from moto.server import ThreadedMotoServer

from tests.support import ACCOUNT_ID, Client, bearer, hs256_token

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.conftest import Standin


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """Moto's server on a free loopback port, for this module's tests."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def _sts_at_moto(
    moto_url: str, standin: Standin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STS goes to moto; Chime, which moto does not cover, to the stand-in."""
    del standin
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_url)


async def test_sign_in_credentials_from_moto_name_the_user(
    client: Client, standin: Standin, hs256_secret: str, moto_url: str
) -> None:
    """Moto accepts our AssumeRole, and its credentials act as chime_<user id>."""
    token = hs256_token(hs256_secret, "us-east-1:0f6d3b0e-8a55-4b8e-9d7c-2f1d52c0a9e4")

    response = await client.post("/v1/sign-in", headers=bearer(token))

    assert response.status == 200
    body = await response.json()
    credentials = body["ChimeCredentials"]
    assert standin.state.call_count("AssumeRole") == 0
    assert credentials["AccessKeyId"] not in standin.state.sessions
    async with get_session().create_client(
        "sts",
        region_name="us-east-1",
        endpoint_url=moto_url,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    ) as sts:
        identity = await sts.get_caller_identity()
    assert identity["Arn"] == (
        f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/chime-messaging-user/"
        "chime_us-east-1_0f6d3b0e-8a55-4b8e-9d7c-2f1d52c0a9e4"
    )
