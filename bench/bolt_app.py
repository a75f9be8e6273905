"""The baseline of the Slack ack benchmark: the smallest slack-bolt app that takes the same
clicks, served by the same uvicorn as deploybot (`python -m uvicorn bench.bolt_app:app`).

A Bolt `AsyncApp` behind Bolt's own Starlette adapter, checking the same signing secret
(`SLACK_SIGNING_SECRET`), with one `@app.action(...)` listener that only acks. Bolt acks in
HTTP mode the way deploybot's listeners do (`process_before_response=False`: the listener
runs in a task, the request waits for its `ack()`).

Token verification needs no network: instead of a bot token, whose `auth.test` Bolt would
call on the first request, the app has an `authorize` function that answers at once with
a fixed bot user and token. Nothing here calls Slack.
"""

from __future__ import annotations

import os
import re
from typing import Any

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BUTTONS = re.compile(r"^(approve|reject|promote|rollback|pause|resume)$")


async def authorize(enterprise_id: str | None, team_id: str | None, **_: Any) -> AuthorizeResult:
    """Every team is this one bot: no `auth.test`, no OAuth store."""
    return AuthorizeResult(
        enterprise_id=enterprise_id,
        team_id=team_id,
        bot_user_id="U0BASELINE",
        bot_id="B0BASELINE",
        bot_token="xoxb-baseline",  # never sent anywhere
    )


bolt = AsyncApp(
    signing_secret=os.environ["SLACK_SIGNING_SECRET"],
    authorize=authorize,
    process_before_response=False,
)


@bolt.action(BUTTONS)
async def button(ack: Any) -> None:
    await ack()


handler = AsyncSlackRequestHandler(bolt)


async def events(request: Request) -> Response:
    return await handler.handle(request)


app = Starlette(routes=[Route("/slack/events", events, methods=["POST"])])
