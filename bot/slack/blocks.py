"""Block Kit and mrkdwn builders (pure)."""

from __future__ import annotations


def escape(text: str) -> str:
    """Make outside text inert in mrkdwn: no mentions, no links, no `<!channel>`."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
