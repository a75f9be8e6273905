"""Small builders shared by tests: signed requests as GitHub and Slack send them."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any


def github_headers(
    body: bytes, *, secret: str, event: str, delivery: str | None = None
) -> dict[str, str]:
    """Headers of a GitHub App delivery, signed the way GitHub documents."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={digest}",
        "User-Agent": "GitHub-Hookshot/test",
    }


def slack_headers(body: bytes, *, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers of a Slack request, signed the way Slack documents (`v0:{ts}:{body}`)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
    }


def webhook_examples(corpora: Path) -> list[tuple[str, Path]]:
    """Every octokit example delivery as (event, path); the event is the folder name."""
    root = corpora / "github-webhooks" / "payload-examples" / "api.github.com"
    return sorted((p.parent.name, p) for p in root.glob("*/*.json"))


def compact(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
