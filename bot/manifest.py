"""The Slack app manifest and the GitHub App manifest, with this deployment's URLs.

Both are pure: they read the packaged Slack manifest and return fresh dicts, so the CLI
(`deploybot manifest slack|github`) and the tests build them the same way.
"""

from __future__ import annotations

from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import yaml

__all__ = [
    "ALWAYS_DELIVERED_EVENTS",
    "GITHUB_EVENTS",
    "GITHUB_MANIFEST_REDIRECT_PATH",
    "GITHUB_PERMISSIONS",
    "GITHUB_WEBHOOK_PATH",
    "PLACEHOLDER_BASE_URL",
    "github_manifest",
    "slack_manifest",
]

PLACEHOLDER_BASE_URL = "https://deploybot.example.com"
GITHUB_WEBHOOK_PATH = "/github/webhook"
GITHUB_MANIFEST_REDIRECT_PATH = "/github/manifest/callback"

# CONTRACT §8, in GitHub's permission names.
GITHUB_PERMISSIONS: dict[str, str] = {
    "deployments": "write",
    "pull_requests": "read",
    "issues": "write",
    "contents": "read",
    "statuses": "read",
    "checks": "read",
    "actions": "read",
    "members": "read",
}

# CONTRACT §8's webhook events that an App subscribes to. Each is allowed by a permission
# above: pull_request (pull_requests), issue_comment (issues), deployment, deployment_status
# and deployment_protection_rule (deployments), check_suite (checks), status (statuses),
# workflow_run (actions).
GITHUB_EVENTS: tuple[str, ...] = (
    "pull_request",
    "issue_comment",
    "deployment",
    "deployment_status",
    "check_suite",
    "status",
    "workflow_run",
    "deployment_protection_rule",
)

# GitHub's webhook reference for these: "All GitHub Apps receive this event by default.
# You cannot manually subscribe to this event." Listing them in `default_events` is invalid.
ALWAYS_DELIVERED_EVENTS: tuple[str, ...] = ("installation", "installation_repositories")


def slack_manifest(base_url: str, socket_mode: bool = False) -> dict[str, Any]:
    """The Slack app manifest with its request URLs pointing at `base_url`.

    With `socket_mode`, Slack delivers over the app-level websocket instead, so the
    manifest enables Socket Mode and carries no request URLs.
    """
    base = _base(base_url)
    text = resources.files("bot").joinpath("app-manifest.yml").read_text(encoding="utf-8")
    manifest = _rebase(yaml.safe_load(text), base)
    settings = manifest["settings"]
    settings["socket_mode_enabled"] = socket_mode
    if socket_mode:
        settings["event_subscriptions"].pop("request_url", None)
        settings["interactivity"].pop("request_url", None)
        for command in manifest["features"].get("slash_commands", []):
            command.pop("url", None)
    return manifest


def github_manifest(
    base_url: str, name: str = "deploybot", *, redirect_url: str | None = None
) -> dict[str, Any]:
    """The GitHub App manifest for the manifest registration flow.

    GitHub sends the browser back to `redirect_url` (by default
    `<base_url>/github/manifest/callback`) with a `code` to exchange within an hour at
    `POST /app-manifests/{code}/conversions` for the App id, key and webhook secret.
    """
    base = _base(base_url)
    return {
        "name": name,
        "url": base,
        "description": "ChatOps deploy conductor: pull requests and deployments as Slack threads.",
        "hook_attributes": {"url": base + GITHUB_WEBHOOK_PATH, "active": True},
        "redirect_url": redirect_url or base + GITHUB_MANIFEST_REDIRECT_PATH,
        "public": False,
        "default_permissions": dict(GITHUB_PERMISSIONS),
        "default_events": list(GITHUB_EVENTS),
    }


def _base(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"base URL must be an absolute http(s) URL, got {base_url!r}")
    return base_url.rstrip("/")


def _rebase(value: Any, base: str) -> Any:
    if isinstance(value, dict):
        return {key: _rebase(item, base) for key, item in value.items()}
    if isinstance(value, list):
        return [_rebase(item, base) for item in value]
    if isinstance(value, str) and value.startswith(PLACEHOLDER_BASE_URL + "/"):
        return base + value[len(PLACEHOLDER_BASE_URL) :]
    return value
