"""`POST /github/webhook`: verify, store in the inbox, answer. Nothing else on the request path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from githubkit import webhooks
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.body_limit import BodyTooLarge, read_capped
from storage import inbox

# GitHub caps webhook payloads at 25 MB; anything larger is not from GitHub.
MAX_BODY_BYTES = 25 * 1024 * 1024
SOURCE = "github"

log = structlog.get_logger(__name__)


class _Envelope(BaseModel):
    """What the route reads of a body: that it is one JSON object, and its `action`.

    Parsed by pydantic's JSON parser, which checks the syntax of the whole body but builds
    only this field: a full parse of a 15 kB delivery was the route's largest cost, and the
    worker parses the stored body again anyway."""

    model_config = ConfigDict(extra="ignore")
    action: Any = None


def _answer(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


def signature_valid(secret: SecretStr, body: bytes, signature: str | None) -> bool:
    """True when `X-Hub-Signature-256` is the HMAC-SHA256 of the raw body (constant-time)."""
    # compare_digest raises on non-ASCII text: such a header is simply not a signature.
    if not signature or not signature.startswith("sha256=") or not signature.isascii():
        return False
    return webhooks.verify(secret.get_secret_value(), body, signature)


def webhook_router(
    *,
    secret: SecretStr,
    sessions: async_sessionmaker[AsyncSession],
    on_stored: Callable[[], None],
    max_body: int = MAX_BODY_BYTES,
) -> APIRouter:
    """The GitHub ingress route; `on_stored` wakes the inbox worker."""
    router = APIRouter()
    writer = inbox.GroupCommit(sessions)

    async def receive(request: Request) -> JSONResponse:
        try:
            body = await read_capped(request, max_body)
        except BodyTooLarge:
            return _answer(413, f"payload larger than {max_body} bytes")
        if not signature_valid(secret, body, request.headers.get("x-hub-signature-256")):
            return _answer(401, "bad or missing X-Hub-Signature-256")
        delivery_id = request.headers.get("x-github-delivery", "").strip()
        event = request.headers.get("x-github-event", "").strip()
        if not delivery_id or not event:
            return _answer(400, "X-GitHub-Delivery and X-GitHub-Event headers are required")
        try:
            text = body.decode("utf-8")
            action = _Envelope.model_validate_json(body).action
        except UnicodeDecodeError:
            return _answer(400, "body is not UTF-8 JSON")
        except ValidationError as exc:
            not_json = exc.errors()[0]["type"] == "json_invalid"
            return _answer(400, "body is not JSON" if not_json else "body must be a JSON object")
        try:
            stored = await writer.store(
                inbox.Delivery(
                    source=SOURCE,
                    delivery_id=delivery_id[:200],
                    event=event[:100],
                    action=action[:100] if isinstance(action, str) else None,
                    body=text,
                )
            )
        except (OperationalError, DBAPIError, OSError) as exc:
            log.error("inbox unavailable", delivery=delivery_id, error=type(exc).__name__)
            return JSONResponse(
                {"message": "storage unavailable, retry"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        if not stored:
            return _answer(200, "duplicate delivery, already stored")
        on_stored()
        log.debug("delivery stored", delivery=delivery_id, github_event=event, action=action)
        return _answer(202, "stored")

    # A plain Starlette route: it reads the raw request itself, so FastAPI's parameter
    # resolution would only add work on the busiest path.
    router.add_route("/github/webhook", receive, methods=["POST"], include_in_schema=False)
    return router
