"""The CLI commands that need no server."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from typer.testing import CliRunner

from bot.cli import cli
from storage import audit, db

runner = CliRunner()


def test_manifest_github_points_at_the_given_url() -> None:
    result = runner.invoke(cli, ["manifest", "github", "--url", "https://bot.acme.dev/"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["hook_attributes"]["url"] == "https://bot.acme.dev/github/webhook"
    assert manifest["default_permissions"]["deployments"] == "write"


def test_manifest_slack_points_at_the_given_url() -> None:
    result = runner.invoke(cli, ["manifest", "slack", "--url", "https://bot.acme.dev"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert (
        manifest["settings"]["interactivity"]["request_url"] == "https://bot.acme.dev/slack/events"
    )
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/deploy"]


def test_manifest_of_an_unknown_kind_is_refused() -> None:
    result = runner.invoke(cli, ["manifest", "gitlab"])
    assert result.exit_code == 2
    assert "slack" in result.output and "github" in result.output


def test_audit_prints_json_lines_since_a_time(database_url: str, monkeypatch) -> None:
    async def write() -> None:
        engine = db.create_engine(database_url)
        await db.migrate(engine)
        async with db.session_factory(engine).begin() as session:
            for day, action in [(1, "lock"), (3, "deploy"), (5, "rollback")]:
                audit.record(
                    session,
                    actor="alice",
                    source="slack",
                    action=action,
                    repository="acme/api",
                    at=datetime(2026, 11, day, tzinfo=UTC),
                )
        await engine.dispose()

    asyncio.run(write())
    monkeypatch.setenv("DATABASE_URL", database_url)
    result = runner.invoke(cli, ["audit", "--since", "2026-11-02"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["action"] for line in lines] == ["deploy", "rollback"]
    assert lines[0]["at"] == "2026-11-03T00:00:00+00:00" and lines[0]["source"] == "slack"
    bad = runner.invoke(cli, ["audit", "--since", "yesterday"])
    assert bad.exit_code == 2 and "ISO 8601" in bad.output
