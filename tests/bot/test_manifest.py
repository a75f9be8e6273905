"""The Slack app manifest and the GitHub App manifest against CONTRACT §5 and §8."""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path

import pytest
import yaml

from bot.manifest import (
    ALWAYS_DELIVERED_EVENTS,
    PLACEHOLDER_BASE_URL,
    github_manifest,
    slack_manifest,
)

ROOT = Path(__file__).resolve().parents[2]
BASE = "https://deploy.acme.test"

# CONTRACT §8, as written there.
CONTRACT_PERMISSIONS = {
    "deployments": "write",
    "pull_requests": "read",
    "issues": "write",
    "contents": "read",
    "statuses": "read",
    "checks": "read",
    "actions": "read",
    "members": "read",
}
CONTRACT_EVENTS = {
    "pull_request",
    "issue_comment",
    "deployment",
    "deployment_status",
    "check_suite",
    "status",
    "workflow_run",
    "deployment_protection_rule",
    "installation",
    "installation_repositories",
}
# GitHub's webhook reference: the permission an App needs to subscribe to each event.
EVENT_PERMISSION = {
    "pull_request": "pull_requests",
    "issue_comment": "issues",
    "deployment": "deployments",
    "deployment_status": "deployments",
    "deployment_protection_rule": "deployments",
    "check_suite": "checks",
    "status": "statuses",
    "workflow_run": "actions",
}
# CONTRACT §5, the Slack `/deploy` subcommands.
SLASH_SUBCOMMANDS = [
    "help", "subscribe", "unsubscribe", " to ", "status", "rollback", "lock", "unlock",
    "freeze", "unfreeze", "pause", "resume", "link",
]  # fmt: skip


def packaged_yaml() -> str:
    return resources.files("bot").joinpath("app-manifest.yml").read_text(encoding="utf-8")


def test_repository_root_manifest_is_the_packaged_one():
    root_copy = ROOT / "app-manifest.yml"
    assert root_copy.read_text(encoding="utf-8") == packaged_yaml()
    # The package holds the real file: a wheel copies it, and a symlink would dangle there.
    assert not (ROOT / "bot" / "app-manifest.yml").is_symlink()


def test_the_manifest_ships_as_package_data():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "*.yml" in pyproject["tool"]["setuptools"]["package-data"]["*"]


def test_yaml_parses_and_is_the_http_mode_manifest():
    manifest = yaml.safe_load(packaged_yaml())

    assert manifest["display_information"]["name"] == "deploybot"
    assert manifest["features"]["bot_user"]["display_name"] == "deploybot"
    assert manifest["settings"]["socket_mode_enabled"] is False
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert manifest["oauth_config"]["scopes"]["bot"] == [
        "commands",
        "chat:write",
        "channels:history",
        "groups:history",
    ]
    assert "user" not in manifest["oauth_config"]["scopes"]
    urls = [
        manifest["settings"]["event_subscriptions"]["request_url"],
        manifest["settings"]["interactivity"]["request_url"],
        manifest["features"]["slash_commands"][0]["url"],
    ]
    assert urls == [PLACEHOLDER_BASE_URL + "/slack/events"] * 3


def test_slash_command_lists_every_subcommand():
    [command] = slack_manifest(BASE)["features"]["slash_commands"]

    assert command["command"] == "/deploy"
    assert command["url"] == BASE + "/slack/events"
    for word in SLASH_SUBCOMMANDS:
        assert word in command["usage_hint"], word
    assert len(command["usage_hint"]) <= 1000  # Slack's limit for a usage hint
    assert len(command["description"]) <= 2000


@pytest.mark.parametrize("base", [BASE, BASE + "/", "http://127.0.0.1:8080/deploybot"])
def test_slack_urls_are_rewritten(base):
    manifest = slack_manifest(base)
    expected = base.rstrip("/") + "/slack/events"

    assert manifest["settings"]["event_subscriptions"]["request_url"] == expected
    assert manifest["settings"]["interactivity"]["request_url"] == expected
    assert manifest["features"]["slash_commands"][0]["url"] == expected
    assert PLACEHOLDER_BASE_URL not in json.dumps(manifest)


def test_socket_mode_manifest_has_no_request_urls():
    manifest = slack_manifest(BASE, socket_mode=True)

    assert manifest["settings"]["socket_mode_enabled"] is True
    assert "request_url" not in manifest["settings"]["event_subscriptions"]
    assert "request_url" not in manifest["settings"]["interactivity"]
    assert "url" not in manifest["features"]["slash_commands"][0]
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]


def test_each_call_returns_a_fresh_manifest():
    first = slack_manifest(BASE)
    first["oauth_config"]["scopes"]["bot"].append("admin")
    assert "admin" not in slack_manifest(BASE)["oauth_config"]["scopes"]["bot"]


@pytest.mark.parametrize("bad", ["deploy.acme.test", "ftp://x", "https://", "https://x/?a=1"])
def test_base_url_must_be_an_http_url(bad):
    with pytest.raises(ValueError):
        slack_manifest(bad)
    with pytest.raises(ValueError):
        github_manifest(bad)


def test_github_permissions_are_exactly_the_contract():
    assert github_manifest(BASE)["default_permissions"] == CONTRACT_PERMISSIONS


def test_github_events_are_the_contract_minus_the_always_delivered():
    events = github_manifest(BASE)["default_events"]

    assert len(events) == len(set(events))
    assert set(events) | set(ALWAYS_DELIVERED_EVENTS) == CONTRACT_EVENTS
    assert not set(events) & {"installation", "installation_repositories"}


def test_every_github_event_is_allowed_by_a_granted_permission():
    manifest = github_manifest(BASE)
    for event in manifest["default_events"]:
        assert EVENT_PERMISSION[event] in manifest["default_permissions"], event


def test_github_manifest_urls_and_flags():
    manifest = github_manifest(BASE + "/", name="deploybot-staging")

    assert manifest["name"] == "deploybot-staging"
    assert manifest["url"] == BASE
    assert manifest["hook_attributes"] == {"url": BASE + "/github/webhook", "active": True}
    assert manifest["redirect_url"].startswith(BASE + "/")
    assert manifest["public"] is False
    assert github_manifest(BASE, redirect_url="https://x.test/cb")["redirect_url"] == (
        "https://x.test/cb"
    )
    json.dumps(manifest)  # the manifest flow posts it as JSON
