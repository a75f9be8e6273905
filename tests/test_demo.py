"""`deploybot demo`: the whole story runs and says what happened; its thread renderer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.demo import FIRST, SECOND, render_thread
from bot.slack.blocks import (
    ApprovalRequest,
    Board,
    Button,
    EnvironmentLine,
    approval_request,
    escape,
    status_board,
)
from tests.conftest import CORPORA

BIN = Path(sys.executable).parent
NAMES = {"U0ALICE": "alice", "U0BOB": "bob"}
HOSTILE = "Faster <!channel> checkout & <@U0BOB> <http://evil.example|pay> &lt;"


def _deploybot() -> list[str]:
    script = BIN / "deploybot"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot"]


def _run_demo(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "GITHUB_", "DEPLOYBOT_", "DATABASE_URL"))
    }
    return subprocess.run(
        [*_deploybot(), "demo"],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.mark.timeout(120)
def test_the_demo_tells_the_whole_story(tmp_path: Path) -> None:
    # A developer's `.env` and environment must not leak in: the demo passes its own values.
    (tmp_path / ".env").write_text(
        "SLACK_APP_TOKEN=xapp-1-from-a-dotenv\nDATABASE_URL=postgresql://nobody@nowhere/db\n"
    )
    result = _run_demo(
        tmp_path,
        DEPLOYBOT_CORPORA=str(CORPORA),
        SLACK_APP_TOKEN="xapp-1-from-the-environment",
        GITHUB_API_URL="https://api.github.com",
        DEPLOYBOT_TICK_SECONDS="60",
        HTTPS_PROXY="http://127.0.0.1:9",
    )
    out = result.stdout
    assert result.returncode == 0, f"{out}\n{result.stderr}"

    assert 'alice opens PR #42 "Add express checkout"' in out
    assert "(only visible to alice)" in out  # alice may not approve her own deploy
    assert "Approved by bob" in out
    assert f"back to {FIRST.short}" in out  # the rollback goes to #42's commit
    assert "production: rolled back" in out  # the final board of #43
    assert f"{SECOND.short} to production" in out
    assert "[ Approve ]  [ Reject ]" in out
    assert "All of that really happened" in out
    # The app's own log lines stay out of the story.
    assert "[info" not in out and "[info" not in result.stderr
    assert ".env" not in out and not list(tmp_path.glob("*.db"))


def test_without_the_corpora_the_demo_says_where_to_find_them(tmp_path: Path) -> None:
    result = _run_demo(tmp_path, DEPLOYBOT_CORPORA=str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "corpora were not found" in result.stderr
    assert "DEPLOYBOT_CORPORA" in result.stderr


# --- render_thread ------------------------------------------------------------------------


def _board(title: str = HOSTILE) -> dict:
    board = status_board(
        Board(
            repository="acme/shop",
            pr_number=42,
            title=title,
            author="alice",
            head_sha="393d693f6f3965c7bdb56c5aa45cfebd0d3325a4",
            head_ref="express-checkout",
            pr_url="https://github.com/acme/shop/pull/42",
            environments=(
                EnvironmentLine(
                    "stage",
                    "success",
                    "393d693f6f3965c7bdb56c5aa45cfebd0d3325a4",
                    requested_by="alice",
                    buttons=(Button("rollback", "rollback:1:stage"),),
                ),
                EnvironmentLine("production"),
            ),
        )
    )
    return {"ts": "1.0001", "bot_id": "B1", "user": "U0DEPLOYBOT", **board.as_kwargs()}


def test_a_board_reads_like_slack_shows_it() -> None:
    text = render_thread([_board("Add express checkout")], NAMES)
    lines = text.splitlines()
    assert lines[0] == "│ #42 Add express checkout"
    assert "│ acme/shop#42 by alice · `393d693` on `express-checkout`" in lines
    assert "│ ✅ stage: deployed · `393d693` · by alice" in lines
    assert "│ [ Roll back ]" in lines
    assert "│ ▫️ production: not deployed" in lines
    assert "https://github.com" not in text  # links show their text


def test_outside_text_stays_inert_and_is_shown_as_typed() -> None:
    text = render_thread([_board()], NAMES)
    assert text.splitlines()[0] == f"│ #42 {HOSTILE}"  # a plain_text header, shown as is
    assert "@channel" not in text and "@bob" not in text and "evil" not in text.split("\n", 1)[1]
    # The escaped title (in the notification text, a mrkdwn reply) reads as typed.
    reply = {
        "ts": "1.0002",
        "thread_ts": "1.0001",
        "bot_id": "B1",
        "text": f"Deploying *{escape(HOSTILE)}*",
    }
    shown = render_thread([reply], NAMES)
    assert shown == f"  ↳ deploybot: Deploying {HOSTILE}"


@pytest.mark.parametrize(
    ("mrkdwn", "shown"),
    [
        ("&lt;!channel&gt; hi", "<!channel> hi"),
        ("&amp;lt;b&amp;gt;", "&lt;b&gt;"),  # decoded once, not twice
        ("<!channel> deploys", "@channel deploys"),
        ("ask <@U0BOB>", "ask @bob"),
        ("ask <@U0CAROL>", "ask @U0CAROL"),
        ("see <https://github.com/acme/shop/pull/42|acme/shop#42>", "see acme/shop#42"),
        ("see <https://example.com>", "see https://example.com"),
        (
            "at <!date^1700000000^{date_short_pretty} {time}|2023-11-14 22:13 UTC>",
            "at 2023-11-14 22:13 UTC",
        ),
        ("*Approved* by bob, `393d693`", "Approved by bob, `393d693`"),
        ("2*3*4 stays", "2*3*4 stays"),
    ],
)
def test_mrkdwn_is_rendered_for_a_terminal(mrkdwn: str, shown: str) -> None:
    message = {"ts": "1.0002", "thread_ts": "1.0001", "bot_id": "B1", "text": mrkdwn}
    assert render_thread([message], NAMES) == f"  ↳ deploybot: {shown}"


def test_replies_buttons_ephemerals_in_order_with_who_said_them() -> None:
    request = approval_request(
        ApprovalRequest(
            repository="acme/shop",
            environment="production",
            commit_sha="393d693f6f3965c7bdb56c5aa45cfebd0d3325a4",
            requested_by="alice",
            required=1,
            approve=Button("approve", "rollout:2"),
            reject=Button("reject", "rollout:2"),
            pr_number=42,
        )
    )
    thread = [
        _board("Add express checkout"),
        {"ts": "1.0002", "thread_ts": "1.0001", "bot_id": "B1", **request.as_kwargs()},
        {"message_ts": "1.0003", "user": "U0ALICE", "text": "You asked for this deploy."},
        {"ts": "1.0004", "thread_ts": "1.0001", "user": "U0BOB", "text": "on it"},
        {"ts": "1.0005", "thread_ts": "1.0001", "bot_id": "B1", "text": "Approved by bob",
         "edited": {"user": "U0DEPLOYBOT", "ts": "1.0006"}},
    ]  # fmt: skip
    text = render_thread(thread, NAMES)
    lines = text.splitlines()
    asks = lines.index(
        "  ↳ deploybot: ✋ alice asks to deploy `393d693` to production (acme/shop#42)"
    )
    assert lines[asks - 1].startswith("│ ")  # after the board
    assert "[ Approve ]  [ Reject ]" in lines[asks + 3]
    assert lines[asks + 3].startswith(" " * len("  ↳ deploybot: "))  # aligned under its text
    assert lines[-3:] == [
        "  ↳ deploybot (only visible to alice): You asked for this deploy.",
        "  ↳ bob: on it",
        "  ↳ deploybot (edited): Approved by bob",
    ]


def test_a_message_without_blocks_or_text_still_renders() -> None:
    assert render_thread([{"ts": "1.0", "thread_ts": "0.9"}]) == "  ↳ deploybot:"
    assert render_thread([]) == ""
