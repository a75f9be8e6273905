"""The CLI commands that need no server."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from bot.cli import cli

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
