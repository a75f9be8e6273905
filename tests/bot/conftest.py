"""The real app (lifespan, database, worker) behind an in-process HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from bot.app import create_app
from integrations.emulators.github import GitHubEmulator
from integrations.emulators.slack import SlackEmulator
from tests.conftest import BOT_TOKEN


@pytest.fixture(scope="session")
def slack_server() -> Iterator[SlackEmulator]:
    with SlackEmulator(bot_token=BOT_TOKEN) as emulator:
        yield emulator


@pytest.fixture
async def app(
    make_settings, database_url: str, slack: SlackEmulator, github: GitHubEmulator
) -> AsyncIterator[FastAPI]:
    app = create_app(
        make_settings(DATABASE_URL=database_url, SLACK_API_URL=slack.url, GITHUB_API_URL=github.url)
    )
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://deploybot") as client:
        yield client
