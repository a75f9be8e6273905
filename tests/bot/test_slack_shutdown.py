"""Shutting down the real app (its lifespan) with Slack work still to do after an ack: it is
waited for, up to the grace, before the database goes; past the grace it is dropped and said so."""

from __future__ import annotations

import time

import httpx
import pytest
import structlog
from fastapi import FastAPI

from bot.app import create_app
from integrations.emulators.github import GitHubEmulator
from integrations.emulators.slack import SlackEmulator
from tests.story import Story


@pytest.fixture
def app(make_settings, database_url: str, slack: SlackEmulator, github: GitHubEmulator) -> FastAPI:
    """The app, not started: each test runs its lifespan itself, to end it."""
    return create_app(
        make_settings(DATABASE_URL=database_url, SLACK_API_URL=slack.url, GITHUB_API_URL=github.url)
    )


async def home_opened_then_shut_down(
    app: FastAPI, slack: SlackEmulator, github: GitHubEmulator, *, retry_after: str
) -> float:
    """Open the Home tab while Slack rate-limits `views.publish` (the tab is drawn after the
    ack, once the client has waited `retry_after` seconds), then shut the app down at once:
    the seconds the shutdown took."""
    async with app.router.lifespan_context(app):
        slack.fail("views.publish", status=429, headers={"Retry-After": retry_after})
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://deploybot") as client:
            response = await Story.in_process(app, client, github, slack).open_home("U0BOB")
        assert response.status_code == 200
        assert "U0BOB" not in slack.home_views  # acked; the tab is still to be drawn
        started = time.monotonic()
    return time.monotonic() - started


async def test_shutdown_waits_for_the_work_after_an_ack(
    app: FastAPI, slack: SlackEmulator, github: GitHubEmulator
) -> None:
    await home_opened_then_shut_down(app, slack, github, retry_after="1")
    assert "U0BOB" in slack.home_views
    assert slack.invalid_calls == []


async def test_work_past_the_grace_is_dropped_and_logged(
    app: FastAPI, slack: SlackEmulator, github: GitHubEmulator
) -> None:
    app.state.services.slack.after_ack.grace = 0.3
    with structlog.testing.capture_logs() as logs:
        took = await home_opened_then_shut_down(app, slack, github, retry_after="60")
    assert took < 10, f"the shutdown took {took:.1f} s"
    assert "U0BOB" not in slack.home_views
    (dropped,) = [entry for entry in logs if "dropped" in entry["event"]]
    assert dropped["log_level"] == "warning"
    assert dropped["listeners"] == {"app_home_opened": 1} and dropped["cancelled"] == 1
