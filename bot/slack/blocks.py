"""Block Kit and mrkdwn builders (pure)."""

from __future__ import annotations

from typing import Any


def escape(text: str) -> str:
    """Make outside text inert in mrkdwn: no mentions, no links, no `<!channel>`."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def home_view(usage: str) -> dict[str, Any]:
    """The App Home tab: what deploybot is and how to drive it."""
    return {
        "type": "home",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "deploybot"}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "Ship pull requests through your environments from Slack and "
                    "from PR comments. Subscribe a channel to a repository to get a thread "
                    "for each pull request.",
                },
            },
            {"type": "divider"},
            {"type": "section", "text": {"type": "mrkdwn", "text": usage}},
        ],
    }
