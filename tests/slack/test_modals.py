"""Modals (pure): valid views whatever they are given, and what a submission carries back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.slack import modals
from integrations.emulators.slack import view_errors

WHEN = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
HOSTILE = "<!channel> <@U0BOSS> <https://evil.example|click> & `tick` *bold*\n" * 3


def valid(view: dict) -> None:
    assert view_errors(view, kinds=("modal",)) == ([], [])


def test_confirm_modal_carries_the_command_back() -> None:
    view = modals.confirm(
        title="Deploy to production please now",
        text="Deploy acme/api@main to `production`?",
        verb="Deploy",
        meta={"text": "acme/api to production", "channel": "C1", "response_url": None},
    )
    valid(view)
    assert view["callback_id"] == modals.CONFIRM
    assert len(view["title"]["text"]) <= modals.MAX_TITLE
    assert modals.read_metadata(view) == {
        "text": "acme/api to production",
        "channel": "C1",
        "response_url": None,
    }


def test_rollback_modal_preselects_the_newest_and_caps_the_list() -> None:
    candidates = [
        modals.Candidate(sha=f"{i:040x}", when=WHEN, by="alice", source="deploybot")
        for i in range(14)
    ]
    view = modals.rollback(
        repository="acme/api",
        environment="production",
        current_sha="f" * 40,
        candidates=candidates,
        meta={"repository": "acme/api"},
    )
    valid(view)
    (picker,) = [b for b in view["blocks"] if b.get("block_id") == modals.TARGET_BLOCK]
    options = picker["element"]["options"]
    assert len(options) == modals.MAX_OPTIONS
    assert picker["element"]["initial_option"] == options[0]
    assert options[0]["value"] == candidates[0].sha
    assert "4 older commits are not shown" in str(view["blocks"])


def test_rollback_modal_with_nothing_to_go_back_to_cannot_be_submitted() -> None:
    view = modals.rollback(
        repository="acme/api", environment="stage", current_sha="f" * 40, candidates=[], meta={}
    )
    valid(view)
    assert "submit" not in view and "nothing to roll back to" in str(view["blocks"])


def test_github_only_commits_say_where_they_came_from() -> None:
    view = modals.rollback(
        repository="acme/api",
        environment="stage",
        current_sha="f" * 40,
        candidates=[modals.Candidate(sha="a" * 40, source="GitHub")],
        meta={},
    )
    assert "(from GitHub)" in str(view["blocks"])


def test_chosen_target_reads_the_submission() -> None:
    state = {
        "values": {
            modals.TARGET_BLOCK: {modals.TARGET_ACTION: {"selected_option": {"value": "a" * 40}}}
        }
    }
    assert modals.chosen_target({"state": state}) == "a" * 40
    assert modals.chosen_target({"state": {"values": {}}}) is None
    assert modals.chosen_target({}) is None


@pytest.mark.parametrize("metadata", ["", "not json", "[1, 2]", "null"])
def test_foreign_metadata_reads_as_nothing(metadata: str) -> None:
    assert modals.read_metadata({"private_metadata": metadata}) == {}


def test_metadata_that_cannot_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than Slack keeps"):
        modals.metadata({"text": "x" * 3_000})


@given(
    repository=st.text(max_size=300),
    environment=st.text(max_size=300),
    by=st.text(max_size=300),
)
def test_any_text_makes_a_valid_inert_rollback_modal(
    repository: str, environment: str, by: str
) -> None:
    view = modals.rollback(
        repository=repository + HOSTILE,
        environment=environment + HOSTILE,
        current_sha="f" * 40,
        candidates=[modals.Candidate(sha="a" * 40, when=WHEN, by=by + HOSTILE)],
        meta={},
    )
    valid(view)
    for text in mrkdwn(view["blocks"]):  # plain_text cannot mention or link anyone
        assert "<!channel>" not in text and "<@U0BOSS>" not in text and "<https" not in text


def mrkdwn(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["text"]] if node.get("type") == "mrkdwn" else []
        return found + [t for value in node.values() for t in mrkdwn(value)]
    if isinstance(node, list):
        return [t for value in node for t in mrkdwn(value)]
    return []
