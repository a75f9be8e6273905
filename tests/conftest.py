"""Shared fixtures: databases (SQLite and PostgreSQL), settings, keys, the corpora."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from bot.settings import Settings, load_settings
from integrations.emulators.github import GitHubEmulator
from integrations.emulators.slack import SlackEmulator
from storage import db

ROOT = Path(__file__).resolve().parents[1]
CORPORA = Path(os.environ.get("DEPLOYBOT_CORPORA", ROOT.parent / "shared" / "corpora"))


@pytest.fixture(scope="session")
def corpora() -> Path:
    if not CORPORA.is_dir():
        pytest.fail(f"corpora not found at {CORPORA}: check out ../shared beside the project")
    return CORPORA


# --- databases -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL at TEST_DATABASE_URL, dropped at the end."""
    admin_url = os.environ.get("TEST_DATABASE_URL")
    if not admin_url:
        pytest.skip("TEST_DATABASE_URL is not set (make test sets it)")
    name = f"deploybot_test_{uuid.uuid4().hex[:10]}"

    async def admin(statement: str) -> None:
        engine = db.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(sa.text(statement))
        finally:
            await engine.dispose()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    asyncio.run(_migrate(url))
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _migrate(url: str) -> None:
    engine = db.create_engine(url)
    try:
        await db.migrate(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies, so migrations run once per session."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(_migrate(f"sqlite:///{path}"))
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of each kind, one per test."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "deploybot.db"
        target.write_bytes(template.read_bytes())
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("postgres_server_url")
    asyncio.run(_truncate(url))
    return url


async def _truncate(url: str) -> None:
    engine = db.create_engine(url)
    try:
        async with engine.begin() as connection:
            names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
            await connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(database_url)
    yield engine
    await engine.dispose()


# --- settings --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def app_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def app_private_key_pem(app_private_key: rsa.RSAPrivateKey) -> str:
    return app_private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


WEBHOOK_SECRET = "whsec-test-It-is-a-secret"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-1111111111-2222222222-testtokenvalue"


@pytest.fixture
def settings_env(app_private_key_pem: str, tmp_path: Path) -> dict[str, str]:
    """The environment a test deploybot runs with (no `.env` is read)."""
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "GITHUB_APP_ID": "4242",
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GITHUB_APP_PRIVATE_KEY": app_private_key_pem,
        "DEPLOYBOT_LOG_FORMAT": "json",
    }


@pytest.fixture
def make_settings(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    """Settings from `settings_env` plus overrides, read from a clean environment."""

    def build(**env: str) -> Settings:
        for key in list(os.environ):
            if key.startswith(("SLACK_", "GITHUB_", "DEPLOYBOT_", "DATABASE_URL")):
                monkeypatch.delenv(key)
        for key, value in {**settings_env, **env}.items():
            monkeypatch.setenv(key, value)
        return load_settings(env_file=None)

    return build


@pytest.fixture
def slack(slack_server: SlackEmulator) -> SlackEmulator:
    """The Slack emulator (`slack_server`, defined where it is shared), its calls and
    messages forgotten before each test."""
    slack_server.reset()
    return slack_server


@pytest.fixture
def github(app_private_key: rsa.RSAPrivateKey) -> Iterator[GitHubEmulator]:
    """A GitHub emulator of its own for each test (it keeps deployments and files)."""
    public = app_private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with GitHubEmulator(app_id=4242, app_public_key=public) as emulator:
        yield emulator
