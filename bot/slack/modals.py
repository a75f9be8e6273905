"""Modals (pure): the confirmation of a production action and the rollback target picker.

A modal's `private_metadata` carries what the submission needs to act (JSON, at most 3,000
characters); Slack hands it back with the submitting user, so nothing is kept meanwhile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.slack.blocks import _clip, _code, _esc, _one_line, _plain

CONFIRM = "deploy_confirm"
ROLLBACK = "rollback_target"
TARGET_BLOCK = "target"
TARGET_ACTION = "commit"

MAX_TITLE = 24
MAX_METADATA = 3_000
MAX_OPTIONS = 10  # radio buttons offer at most ten
MAX_OPTION_TEXT = 75
_TEXT = 2_000


@dataclass(frozen=True)
class Candidate:
    """A commit that once succeeded in the environment: a rollback target."""

    sha: str
    when: datetime | None = None
    by: str | None = None
    source: str = "deploybot"  # or "GitHub": found only in GitHub's deployment history


def metadata(values: dict[str, Any]) -> str:
    """`values` as private_metadata; ValueError when it cannot fit."""
    text = json.dumps(values, separators=(",", ":"), sort_keys=True)
    if len(text) > MAX_METADATA:
        raise ValueError("modal metadata longer than Slack keeps")
    return text


def read_metadata(view: dict[str, Any]) -> dict[str, Any]:
    """The private_metadata of a submitted view ({} when absent or not ours)."""
    try:
        values = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return values if isinstance(values, dict) else {}


def confirm(*, title: str, text: str, verb: str, meta: dict[str, Any]) -> dict[str, Any]:
    """A yes/no modal: `text` (mrkdwn, already escaped) says exactly what will happen."""
    return {
        "type": "modal",
        "callback_id": CONFIRM,
        "title": _plain(title, MAX_TITLE),
        "submit": _plain(verb, MAX_TITLE),
        "close": _plain("Cancel", MAX_TITLE),
        "private_metadata": metadata(meta),
        "blocks": [{"type": "section", "text": _section(text)}],
    }


def rollback(
    *,
    repository: str,
    environment: str,
    current_sha: str,
    candidates: list[Candidate] | None,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """Pick the commit to roll `environment` back to: the newest first, preselected.
    `candidates` None: still looking them up (the modal says so, and cannot be submitted)."""
    env = _code(_one_line(environment), 60)
    intro = (
        f"{env} of *{_esc(_one_line(repository), 200)}* runs {_code(current_sha[:7])}. "
        "Choose the commit to deploy instead; it is deployed at once, without approvals."
    )
    if candidates is None:
        return {
            "type": "modal",
            "callback_id": ROLLBACK,
            "title": _plain("Roll back", MAX_TITLE),
            "close": _plain("Cancel", MAX_TITLE),
            "private_metadata": metadata(meta),
            "blocks": [
                {"type": "section", "text": _section(intro)},
                {
                    "type": "context",
                    "elements": [_section("Looking up the commits that succeeded there…")],
                },
            ],
        }
    shown = candidates[:MAX_OPTIONS]
    if not shown:
        return {
            "type": "modal",
            "callback_id": ROLLBACK,
            "title": _plain("Roll back", MAX_TITLE),
            "close": _plain("Close", MAX_TITLE),
            "private_metadata": metadata(meta),
            "blocks": [
                {"type": "section", "text": _section(intro)},
                {
                    "type": "section",
                    "text": _section(
                        f"No earlier commit succeeded in {env}, so there is nothing to roll "
                        "back to."
                    ),
                },
            ],
        }
    options = [_option(candidate) for candidate in shown]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": _section(intro)},
        {
            "type": "input",
            "block_id": TARGET_BLOCK,
            "label": _plain("Roll back to", 2_000),
            "element": {
                "type": "radio_buttons",
                "action_id": TARGET_ACTION,
                "options": options,
                "initial_option": options[0],
            },
        },
    ]
    if len(candidates) > len(shown):
        more = len(candidates) - len(shown)
        blocks.append(
            {
                "type": "context",
                "elements": [_section(f"{more} older commits are not shown.")],
            }
        )
    return {
        "type": "modal",
        "callback_id": ROLLBACK,
        "title": _plain("Roll back", MAX_TITLE),
        "submit": _plain("Roll back", MAX_TITLE),
        "close": _plain("Cancel", MAX_TITLE),
        "private_metadata": metadata(meta),
        "blocks": blocks,
    }


def chosen_target(view: dict[str, Any]) -> str | None:
    """The commit picked in a submitted rollback modal."""
    state = (view.get("state") or {}).get("values") or {}
    selected = (state.get(TARGET_BLOCK) or {}).get(TARGET_ACTION) or {}
    option = selected.get("selected_option") or {}
    value = option.get("value")
    return value if isinstance(value, str) and value else None


def _option(candidate: Candidate) -> dict[str, Any]:
    parts = [candidate.sha[:7]]
    if candidate.when is not None:
        parts.append(candidate.when.strftime("%Y-%m-%d %H:%M UTC"))
    if candidate.by:
        parts.append(f"by {_one_line(candidate.by)}")
    if candidate.source != "deploybot":
        parts.append(f"(from {candidate.source})")
    return {"text": _plain(" · ".join(parts), MAX_OPTION_TEXT), "value": candidate.sha}


def _section(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _clip(text, _TEXT), "verbatim": True}
