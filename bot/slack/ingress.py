"""`POST /slack/events`: size cap and signature first, then slack-bolt dispatches and acks.

The signature is checked before Bolt builds its request, because Bolt parses the body
first and an unsigned, malformed body must be a 401, never a 500.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import SecretStr
from slack_bolt.adapter.starlette.async_handler import to_async_bolt_request, to_starlette_response
from slack_bolt.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier

from bot.body_limit import BodyTooLarge, read_capped

# Slack's requests are small forms or JSON (a modal submission is the largest).
MAX_BODY_BYTES = 1024 * 1024


def _answer(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


def slack_router(
    *, slack: AsyncApp, signing_secret: SecretStr | None, max_body: int = MAX_BODY_BYTES
) -> APIRouter:
    """The Slack ingress route; without a signing secret (Socket Mode only) it answers 404."""
    router = APIRouter()
    verifier = SignatureVerifier(signing_secret.get_secret_value()) if signing_secret else None

    async def events(request: Request) -> Response:
        if verifier is None:
            return _answer(404, "Slack runs over Socket Mode here")
        try:
            body = await read_capped(request, max_body)
        except BodyTooLarge:
            return _answer(413, f"payload larger than {max_body} bytes")
        try:
            signed = verifier.is_valid_request(body, dict(request.headers))
        except (ValueError, TypeError):  # a non-numeric timestamp, non-ASCII or non-UTF-8
            signed = False
        if not signed:
            return _answer(401, "bad or missing Slack signature")
        try:
            bolt_request = to_async_bolt_request(request, body)
        except (ValueError, TypeError, KeyError, AttributeError):
            # Only a holder of the signing secret gets here: a broken client, not an attack.
            return _answer(400, "body is not a Slack request")
        return to_starlette_response(await slack.async_dispatch(bolt_request))

    # A plain Starlette route: it reads the raw request itself, so FastAPI's parameter
    # resolution would only add work to every click.
    router.add_route("/slack/events", events, methods=["POST"], include_in_schema=False)
    return router
