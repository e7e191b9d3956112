"""The servers the service is measured against: the bare ceiling and the reference peer.

    python -m bench.peers --kind bare --answer-file ANSWER
    python -m bench.peers --kind hs256 --answer-file ANSWER --key-file SECRET
    python -m bench.peers --kind rs256 --answer-file ANSWER --key-file PUBLIC_PEM

`bare` (B0) answers every `POST /v1/sign-in` with the bytes of a real sign-in
answer and does nothing else: what aiohttp alone costs. `hs256` and `rs256` (P)
do the least a sign-in must: verify the token with PyJWT (the key loaded once),
look the user up in a dict, and `json.dumps` the answer; no logging, no metrics,
no middleware. Each listens on loopback and prints its address first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from standin.cli import serve_until_signalled

if TYPE_CHECKING:
    from collections.abc import Sequence

    from aiohttp.typedefs import Handler

__all__ = ["bare_handler", "main", "peer_handler"]

KINDS: Final = ("bare", "hs256", "rs256")
ANNOUNCEMENT: Final = "listening on "
_BEARER: Final = "Bearer "


def bare_handler(answer: bytes) -> Handler:
    """Answer with the same bytes every time."""

    async def sign_in(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=answer, content_type="application/json")

    return sign_in


def peer_handler(
    *,
    key: str | rsa.RSAPublicKey,
    algorithm: str,
    issuer: str,
    audience: str,
    template: dict[str, Any],
) -> Handler:
    """Verify the token, find the user's answer in a dict, serialise it."""
    answers: dict[str, dict[str, Any]] = {}
    arn_prefix = str(template["ChimeAppInstanceUserArn"]).rpartition("/")[0]

    async def sign_in(request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        if not header.startswith(_BEARER):
            return web.Response(status=401)

        try:
            claims = jwt.decode(
                header[len(_BEARER) :],
                key,
                algorithms=[algorithm],
                audience=audience,
                issuer=issuer,
            )
        except jwt.InvalidTokenError:
            return web.Response(status=401)

        user_id = str(claims["sub"])
        answer = answers.get(user_id)
        if answer is None:
            answer = {
                **template,
                "ChimeAppInstanceUserArn": f"{arn_prefix}/{user_id}",
                "ChimeUserId": user_id,
                "ChimeDisplayName": str(claims.get("name", user_id)),
            }
            answers[user_id] = answer

        return web.Response(
            body=json.dumps(answer).encode(), content_type="application/json"
        )

    return sign_in


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.peers")
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument(
        "--answer-file", type=Path, required=True, help="a real sign-in answer"
    )
    parser.add_argument(
        "--key-file", type=Path, help="the HS256 secret, or the RS256 public key PEM"
    )
    parser.add_argument("--issuer", default="")
    parser.add_argument("--audience", default="")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    return parser


def build_app(arguments: argparse.Namespace) -> web.Application:
    """Build the app the arguments describe."""
    answer = arguments.answer_file.read_bytes()

    if arguments.kind == "bare":
        handler = bare_handler(answer)
    else:
        handler = peer_handler(
            key=_load_key(arguments.kind, arguments.key_file),
            algorithm=arguments.kind.upper(),
            issuer=arguments.issuer,
            audience=arguments.audience,
            template=json.loads(answer),
        )

    app = web.Application()
    app.router.add_post("/v1/sign-in", handler)
    return app


def _load_key(kind: str, path: Path) -> str | rsa.RSAPublicKey:
    """Load the key once: the secret's text, or the RSA public key object."""
    if kind == "hs256":
        return path.read_text().strip()

    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, rsa.RSAPublicKey):
        raise TypeError(f"{path} does not hold an RSA public key")
    return key


async def serve(app: web.Application, host: str, port: int) -> None:
    """Serve a peer until SIGINT or SIGTERM, announcing the bound address first."""
    await serve_until_signalled(app, host, port, announce=ANNOUNCEMENT)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the peer the command line names."""
    arguments = build_parser().parse_args(argv)
    app = build_app(arguments)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(app, arguments.host, arguments.port))

    return 0


if __name__ == "__main__":
    sys.exit(main())
