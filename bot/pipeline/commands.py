"""What people type: PR comment commands and the Slack `/deploy` command (pure, no I/O)."""

from __future__ import annotations

SLACK_USAGE = """\
*Usage:* `/deploy <subcommand>`
• `/deploy help` — this message
• `/deploy subscribe <owner/repo>` · `/deploy unsubscribe <owner/repo>` — threads go here
• `/deploy <owner/repo>[@<ref>] to <env>` — deploy a branch, tag or commit
• `/deploy status <owner/repo>` — every environment at a glance
• `/deploy rollback <owner/repo> <env>` — back to the last good commit
• `/deploy lock <owner/repo> <env> [reason]` · `/deploy unlock <owner/repo> <env>`
• `/deploy freeze <owner/repo> until <time> <reason>` · `/deploy unfreeze <owner/repo>`
• `/deploy pause|resume <owner/repo> <env>` — hold or continue a canary or verification
• `/deploy link <github-login>` — connect your GitHub account (confirmed on GitHub)
Flags: `--force`, `--queue`, `--wait`, `--dry-run`."""


def is_help(text: str) -> bool:
    """True for an empty `/deploy` or `/deploy help` (any case, extra words ignored)."""
    words = text.split()
    return not words or words[0].lower() in {"help", "-h", "--help"}
