"""Block Kit builders: layout, buttons, escaping and limits, checked with the emulator's rules."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.slack.blocks import (
    ACTIONS,
    ApprovalRequest,
    Board,
    Button,
    EnvironmentLine,
    Message,
    approval_request,
    decided,
    escape,
    home_view,
    status_board,
    status_line,
)
from integrations.emulators.slack import block_kit_errors, view_errors

PR_URL = "https://github.com/acme/api/pull/12"
WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
HOSTILE = [
    "<!channel>",
    "<!here> <!everyone>",
    "<@U123>",
    "<#C123|general>",
    "<!subteam^S123>",
    "<http://evil|click>",
    "<https://evil.example/x|https://github.com>",
    "Tom & Jerry &amp; &lt;b&gt;",
    "deploy 🚀 ✅ :tada: naïve 日本語",
    "*bold* _it_ ~strike~ `code` ```block```",
    "line one\nline two\r\n\tthree",
    "@channel @here",
    "",
    "   ",
    ">quote",
    "&" * 3_000,
    "<" * 3_000,
]

STATUS_LINES = [
    ("pending", "⏳", "pending"),
    ("awaiting_approval", "✋", "awaiting approval"),
    ("queued", "🕒", "queued"),
    ("in_progress", "🚀", "deploying"),
    ("verifying", "🔍", "verifying health"),
    ("success", "✅", "deployed"),
    ("failure", "❌", "failed"),
    ("rolled_back", "↩️", "rolled back"),
    ("rejected", "🚫", "rejected"),
    ("skipped", "⏭️", "skipped"),
    ("cancelled", "⚪", "cancelled"),
    (None, "▫️", "not deployed"),
]

# Our own mrkdwn constructs: a link built from a checked URL and escaped text, and a date.
OUR_LINK = re.compile(r"<https?://[^\s<>|]+\|[^<>]*>")
OUR_DATE = re.compile(r"<!date\^-?\d+\^\{date_short_pretty\} \{time\}\|[^<>|]*>")
ENTITY = re.compile(r"&(?!amp;|lt;|gt;)")


def make_board(**changes: Any) -> Board:
    board = Board(
        repository="acme/api",
        pr_number=12,
        title="Fix login",
        author="alice",
        head_sha="0123456789abcdef0123456789abcdef01234567",
        head_ref="fix/login",
        pr_url=PR_URL,
        environments=(
            EnvironmentLine("stage", "success", "0123456789abcdef", "alice", WHEN),
            EnvironmentLine("production"),
        ),
    )
    return replace(board, **changes)


def make_request(**changes: Any) -> ApprovalRequest:
    request = ApprovalRequest(
        repository="acme/api",
        environment="production",
        commit_sha="0123456789abcdef",
        requested_by="alice",
        required=2,
        approve=Button("approve", "rollout:7", confirm=True),
        reject=Button("reject", "rollout:7"),
        approved_by=("bob",),
        approvers=("bob", "carol", "@acme/sre"),
        pr_number=12,
        pr_url=PR_URL,
        requested_at=WHEN,
    )
    return replace(request, **changes)


def walk(node: Any) -> list[dict[str, Any]]:
    """Every dict inside `node`, depth first."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(walk(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(walk(value))
    return found


def mrkdwn_texts(message: Message) -> list[str]:
    return [d["text"] for d in walk(message.blocks) if d.get("type") == "mrkdwn"]


def buttons(message: Message) -> list[dict[str, Any]]:
    return [d for d in walk(message.blocks) if d.get("type") == "button"]


def assert_valid(message: Message) -> None:
    assert block_kit_errors(message.blocks, surface="message") == []
    assert message.text
    assert len(message.text) <= 200


def assert_inert(message: Message) -> None:
    """No `<` or `>` except in our own links and dates; every `&` starts an entity."""
    for text in [message.text, *mrkdwn_texts(message)]:
        rest = OUR_DATE.sub("", OUR_LINK.sub("", text))
        assert "<" not in rest, text
        assert ">" not in rest, text
        assert not ENTITY.search(text), text
    for d in walk(message.blocks):
        if d.get("type") == "mrkdwn":
            assert d.get("verbatim") is True


def assert_inert_and_valid(message: Message) -> None:
    assert_valid(message)
    assert_inert(message)


# --------------------------------------------------------------------------- escape


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("<!channel>", "&lt;!channel&gt;"),
        ("<@U123>", "&lt;@U123&gt;"),
        ("<http://x|y>", "&lt;http://x|y&gt;"),
        ("a & b", "a &amp; b"),
        ("&lt;", "&amp;lt;"),
        ("plain", "plain"),
    ],
)
def test_escape(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped


def test_home_view_is_still_a_valid_home_tab() -> None:
    assert view_errors(home_view("`/deploy help`"), kinds=("home",)) == ([], [])


# --------------------------------------------------------------------------- status board


def test_board_layout() -> None:
    message = status_board(make_board())
    assert_inert_and_valid(message)
    header, summary, divider, stage, production = message.blocks
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "#12 Fix login", "emoji": True},
    }
    assert summary["text"]["text"] == (
        f"<{PR_URL}|acme/api#12> by *alice* · `0123456` on `fix/login`"
    )
    assert divider == {"type": "divider"}
    assert stage["text"]["text"] == (
        "✅ *stage*: deployed · `0123456` · by alice · "
        "<!date^1714566600^{date_short_pretty} {time}|2024-05-01 12:30 UTC>"
    )
    assert production["text"]["text"] == "▫️ *production*: not deployed"
    assert message.text == "acme/api#12: Fix login"
    assert message.as_kwargs() == {"text": message.text, "blocks": message.blocks}


def test_a_text_only_message_sends_no_blocks() -> None:
    assert Message(text="deployed").as_kwargs() == {"text": "deployed"}


@pytest.mark.parametrize(("status", "emoji", "label"), STATUS_LINES)
def test_status_line_per_status(status: str | None, emoji: str, label: str) -> None:
    env = EnvironmentLine("stage", status, "abcdef0123", "alice", WHEN)
    line = status_line(env, head_sha="abcdef0123")
    assert line.startswith(f"{emoji} *stage*: {label} · `abcdef0` · by alice · <!date^")
    message = status_board(make_board(head_sha="abcdef0123", environments=(env,)))
    assert_inert_and_valid(message)
    assert message.blocks[-1]["text"]["text"] == line


def test_status_accepts_a_str_enum() -> None:
    class Status(StrEnum):
        VERIFYING = "verifying"

    assert status_line(EnvironmentLine("stage", Status.VERIFYING)).startswith(
        "🔍 *stage*: verifying health"
    )


def test_unknown_status_is_shown_escaped() -> None:
    line = status_line(EnvironmentLine("stage", "<!channel>"))
    assert line == "❔ *stage*: &lt;!channel&gt;"


def test_line_for_a_rollback_marks_a_commit_other_than_the_head() -> None:
    env = EnvironmentLine("production", "rolled_back", "fedcba9876", "bob")
    assert "`fedcba9` (not the head)" in status_line(env, head_sha="0123456789")
    assert "not the head" not in status_line(env, head_sha="FEDCBA9")


def test_line_links_and_detail() -> None:
    env = EnvironmentLine(
        "stage",
        "verifying",
        log_url="https://ci.example/run/1",
        environment_url="https://stage.example",
        detail="canary 25% · 3/5 probes <ok>",
    )
    line = status_line(env)
    assert "<https://ci.example/run/1|logs> <https://stage.example|open>" in line
    assert line.endswith("\ncanary 25% · 3/5 probes &lt;ok&gt;")


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "https://x.example/a|<!channel>",
        "https://x.example/>",
        "https://x.example/a b",
        "https://x.example/" + "a" * 2_000,
        "",
    ],
)
def test_unsafe_urls_are_not_linked(url: str) -> None:
    board = make_board(
        pr_url=url, environments=(EnvironmentLine("stage", log_url=url, environment_url=url),)
    )
    message = status_board(board)
    assert_inert_and_valid(message)
    assert not any(OUR_LINK.search(text) for text in mrkdwn_texts(message))
    assert message.blocks[1]["text"]["text"].startswith("acme/api#12 by *alice*")


def test_naive_times_are_utc() -> None:
    naive = status_line(EnvironmentLine("stage", "success", updated_at=datetime(2024, 5, 1)))
    aware = status_line(
        EnvironmentLine(
            "stage",
            "success",
            updated_at=datetime(2024, 5, 1, 2, tzinfo=timezone(timedelta(hours=2))),
        )
    )
    assert "<!date^1714521600^{date_short_pretty} {time}|2024-05-01 00:00 UTC>" in naive
    assert naive == aware


@pytest.mark.parametrize(
    ("state", "note", "suffix"),
    [
        ("merged", "🟣 *Merged*", " (merged)"),
        ("closed", "🔒 *Closed* without merging", " (closed)"),
    ],
)
def test_closed_or_merged_pr_says_so(state: str, note: str, suffix: str) -> None:
    message = status_board(make_board(pr_state=state))
    assert_inert_and_valid(message)
    assert message.blocks[2] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": note, "verbatim": True}],
    }
    assert message.text.endswith(suffix)


def test_open_pr_has_no_state_note() -> None:
    assert all(b["type"] != "context" for b in status_board(make_board()).blocks)


def test_board_for_a_commit_without_pr() -> None:
    message = status_board(make_board(pr_number=None, pr_url=None, title="Bump deps"))
    assert_inert_and_valid(message)
    assert message.blocks[0]["text"]["text"] == "Bump deps"
    assert message.blocks[1]["text"]["text"].startswith("acme/api by *alice* · `0123456`")
    assert message.text == "acme/api@0123456: Bump deps"


def test_board_without_environments_says_so() -> None:
    message = status_board(make_board(environments=()))
    assert_inert_and_valid(message)
    assert "No environments configured" in mrkdwn_texts(message)[-1]


def test_empty_strings_still_make_valid_blocks() -> None:
    board = Board("", None, "", "", "", "", environments=(EnvironmentLine("", ""),))
    message = status_board(board)
    assert_inert_and_valid(message)
    assert message.blocks[0]["text"]["text"] == "(no title)"


# --------------------------------------------------------------------------- buttons

BUTTON_SETS = [
    # (state the caller is in, buttons it offers, expected (action_id, label, style, confirm))
    (
        "awaiting approval",
        (Button("approve", "r:1"), Button("reject", "r:1")),
        [("approve", "Approve", "primary", False), ("reject", "Reject", "danger", False)],
    ),
    (
        "approval for production",
        (Button("approve", "r:1", confirm=True), Button("reject", "r:1", confirm=True)),
        [("approve", "Approve", "primary", True), ("reject", "Reject", "danger", True)],
    ),
    (
        "stage succeeded",
        (Button("promote", "r:2"), Button("rollback", "r:2")),
        [
            ("promote", "Promote to production", "primary", False),
            ("rollback", "Roll back", "danger", False),  # its modal confirms
        ],
    ),
    (
        "promote into production",
        (Button("promote", "r:2", confirm=True),),
        [("promote", "Promote to production", "primary", True)],
    ),
    (
        "verifying",
        (Button("pause", "r:3"), Button("rollback", "r:3")),
        [("pause", "Pause", None, False), ("rollback", "Roll back", "danger", False)],
    ),
    (
        "paused",
        (Button("resume", "r:3"), Button("rollback", "r:3", confirm=True)),
        [("resume", "Resume", None, False), ("rollback", "Roll back", "danger", True)],
    ),
    ("nothing to do", (), []),
]


@pytest.mark.parametrize(
    ("state", "offered", "expected"), BUTTON_SETS, ids=[s[0] for s in BUTTON_SETS]
)
def test_button_sets(
    state: str, offered: tuple[Button, ...], expected: list[tuple[str, str, str | None, bool]]
) -> None:
    envs = (EnvironmentLine("stage", "success", buttons=offered), EnvironmentLine("production"))
    message = status_board(make_board(environments=envs))
    assert_inert_and_valid(message)
    got = [
        (b["action_id"], b["text"]["text"], b.get("style"), "confirm" in b)
        for b in buttons(message)
    ]
    assert got == expected
    assert all(b["value"] == offered[0].value for b in buttons(message))
    actions = [b for b in message.blocks if b["type"] == "actions"]
    assert len(actions) == (1 if offered else 0)
    if offered:
        # The buttons sit right under their environment's line.
        index = message.blocks.index(actions[0])
        assert message.blocks[index - 1]["text"]["text"].startswith("✅ *stage*")


@pytest.mark.parametrize(
    ("button", "title", "text", "verb", "style"),
    [
        (
            Button("approve", "v", confirm=True),
            "Approve deploy to stage?",
            "Deploy abcdef0 to stage.",
            "Approve",
            "primary",
        ),
        (
            Button("reject", "v", confirm=True),
            "Reject deploy to stage?",
            "abcdef0 will not be deployed to stage.",
            "Reject",
            "danger",
        ),
        (
            Button("promote", "v", confirm=True),
            "Deploy to production?",
            "Deploy abcdef0 to production, promoting it from stage.",
            "Deploy",
            "primary",
        ),
        (
            Button("rollback", "v", confirm=True),
            "Roll back stage?",
            "Redeploy the last commit that succeeded in stage, replacing abcdef0.",
            "Roll back",
            "danger",
        ),
        (Button("pause", "v", confirm=True), "Pause stage?", None, "Pause", "primary"),
        (
            Button("resume", "v", confirm=True),
            "Resume stage?",
            "Continue the rollout of abcdef0 in stage.",
            "Resume",
            "primary",
        ),
    ],
)
def test_confirm_dialog_names_what_will_happen(
    button: Button, title: str, text: str | None, verb: str, style: str
) -> None:
    envs = (
        EnvironmentLine("stage", "success", "abcdef0123", buttons=(button,)),
        EnvironmentLine("production"),
    )
    [element] = buttons(status_board(make_board(environments=envs)))
    confirm = element["confirm"]
    assert confirm["title"]["text"] == title
    if text is not None:
        assert confirm["text"]["text"] == text
    assert confirm["confirm"]["text"] == verb
    assert confirm["deny"]["text"] == "Cancel"
    assert confirm["style"] == style


def test_button_target_and_label_overrides() -> None:
    button = Button("promote", "v", confirm=True, target="eu-prod", label="Ship it " * 20)
    envs = (EnvironmentLine("stage", "success", buttons=(button,)),)
    message = status_board(make_board(environments=envs))
    assert_inert_and_valid(message)
    [element] = buttons(message)
    assert len(element["text"]["text"]) == 75
    assert element["text"]["text"].endswith("…")
    assert element["confirm"]["title"]["text"] == "Deploy to eu-prod?"


def test_promote_on_the_last_environment_targets_itself() -> None:
    envs = (EnvironmentLine("production", "success", buttons=(Button("promote", "v"),)),)
    [element] = buttons(status_board(make_board(environments=envs)))
    assert element["text"]["text"] == "Promote to production"


def test_the_same_action_may_appear_on_every_line() -> None:
    envs = tuple(
        EnvironmentLine(name, "success", buttons=(Button("rollback", f"r:{name}"),))
        for name in ("dev", "stage", "production")
    )
    message = status_board(make_board(environments=envs))
    assert_inert_and_valid(message)
    assert [b["value"] for b in buttons(message)] == ["r:dev", "r:stage", "r:production"]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Button("deploy", "v"), "unknown action"),  # type: ignore[arg-type]
        (lambda: Button("approve", ""), "button value"),
        (lambda: Button("approve", "x" * 2_001), "button value"),
        (
            lambda: EnvironmentLine("stage", buttons=(Button("pause", "a"), Button("pause", "b"))),
            "at most once",
        ),
        (lambda: make_request(approve=Button("promote", "v")), "approve and reject"),
        (lambda: make_request(reject=Button("approve", "v")), "approve and reject"),
    ],
)
def test_caller_mistakes_are_refused(make: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_every_action_id_is_in_the_contract() -> None:
    assert ACTIONS == ("approve", "reject", "promote", "rollback", "pause", "resume")


# --------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_text_everywhere_in_a_board(hostile: str) -> None:
    env = EnvironmentLine(
        hostile,
        hostile,
        hostile,
        hostile,
        WHEN,
        detail=hostile,
        buttons=tuple(
            Button(a, (hostile or "v")[:2000], confirm=True, target=hostile) for a in ACTIONS
        ),
    )
    board = Board(hostile, 12, hostile, hostile, hostile, hostile, PR_URL, "open", (env, env))
    message = status_board(board)
    assert_inert_and_valid(message)
    for text in [message.text, *mrkdwn_texts(message)]:
        assert "<!channel>" not in text
        assert "<@U123>" not in text
        assert "<http://evil" not in text


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_text_in_approvals(hostile: str) -> None:
    request = make_request(
        repository=hostile,
        environment=hostile,
        commit_sha=hostile,
        requested_by=hostile,
        approved_by=(hostile, hostile),
        approvers=(hostile,) * 30,
    )
    assert_inert_and_valid(approval_request(request))
    for outcome in ("approved", "rejected", "cancelled"):
        assert_inert_and_valid(decided(request, outcome, by=(hostile,), reason=hostile, at=WHEN))


def test_ten_thousand_character_title() -> None:
    title = "<!channel> " + "x" * 10_000
    message = status_board(make_board(title=title))
    assert_inert_and_valid(message)
    header = message.blocks[0]["text"]["text"]
    assert len(header) == 150
    assert header.endswith("…")
    assert message.text.endswith("…")
    assert message.text.startswith("acme/api#12: &lt;!channel&gt; xxx")


def test_truncation_never_splits_an_entity() -> None:
    message = status_board(make_board(head_ref="&" * 500, author="<" * 500, title="&" * 500))
    assert_inert_and_valid(message)
    assert message.text.endswith("&amp;…")


@pytest.mark.parametrize("with_buttons", [False, True])
def test_sixty_environments_fit_and_say_how_many_were_left_out(with_buttons: bool) -> None:
    offered = (Button("promote", "r"), Button("rollback", "r")) if with_buttons else ()
    envs = tuple(
        EnvironmentLine(f"env-{i}", "success", "abc", "alice", WHEN, buttons=offered)
        for i in range(60)
    )
    message = status_board(make_board(environments=envs))
    assert_inert_and_valid(message)
    assert len(message.blocks) <= 50
    shown = sum(
        1
        for b in message.blocks
        if b["type"] == "section" and b["text"]["text"].startswith("✅ *env-")
    )
    note = message.blocks[-1]["elements"][0]["text"]
    assert (
        note == f"{60 - shown} more environments not shown: use `/deploy status` for all of them."
    )
    assert shown == (23 if with_buttons else 46)


def test_exactly_fitting_environments_need_no_note() -> None:
    envs = tuple(EnvironmentLine(f"env-{i}") for i in range(47))
    message = status_board(make_board(environments=envs))
    assert_valid(message)
    assert len(message.blocks) == 50
    assert "not shown" not in mrkdwn_texts(message)[-1]


def test_left_out_environments_are_counted() -> None:
    envs = tuple(EnvironmentLine(f"env-{i}") for i in range(48))
    note = mrkdwn_texts(status_board(make_board(environments=envs)))[-1]
    assert note.startswith("2 more environments not shown")
    # The last line needs two blocks (its buttons) where only one is left.
    last = EnvironmentLine("production", buttons=(Button("promote", "v"),))
    message = status_board(make_board(environments=(*envs[:46], last)))
    assert_valid(message)
    assert mrkdwn_texts(message)[-1].startswith("1 more environment not shown")


# --------------------------------------------------------------------------- approvals


def test_approval_request_layout() -> None:
    message = approval_request(make_request())
    assert_inert_and_valid(message)
    ask, counts, when, actions = message.blocks
    assert ask["text"]["text"] == (
        f"✋ *alice* asks to deploy `0123456` to *production* (<{PR_URL}|acme/api#12>)"
    )
    assert counts["text"]["text"] == (
        "*Approvals:* 1 of 2 (by bob)\n*Who may approve:* bob, carol, @acme/sre (not the requester)"
    )
    assert when["elements"][0]["text"].startswith("Requested <!date^1714566600^")
    approve, reject = actions["elements"]
    assert (approve["action_id"], approve["value"], approve["style"]) == (
        "approve",
        "rollout:7",
        "primary",
    )
    assert approve["confirm"]["title"]["text"] == "Approve deploy to production?"
    assert (reject["action_id"], reject["value"], reject["style"]) == (
        "reject",
        "rollout:7",
        "danger",
    )
    assert "confirm" not in reject
    assert message.text == "Approval needed: 0123456 to production in acme/api"


def test_approval_request_without_approvers_or_approvals() -> None:
    message = approval_request(
        make_request(approved_by=(), approvers=(), requested_at=None, pr_number=None, pr_url=None)
    )
    assert_inert_and_valid(message)
    assert [b["type"] for b in message.blocks] == ["section", "section", "actions"]
    assert message.blocks[0]["text"]["text"].endswith("to *production* (acme/api)")
    assert message.blocks[1]["text"]["text"] == (
        "*Approvals:* 0 of 2\n*Who may approve:* anyone with permission (not the requester)"
    )


def test_long_approver_lists_are_cut_with_a_count() -> None:
    approvers = tuple(f"user-{i:03}" for i in range(500))
    message = approval_request(make_request(approvers=approvers))
    assert_inert_and_valid(message)
    text = message.blocks[1]["text"]["text"]
    match = re.search(r"and (\d+) more", text)
    assert match
    assert text.count("user-") + int(match.group(1)) == 500


@pytest.mark.parametrize(
    ("outcome", "by", "reason", "verdict", "text"),
    [
        (
            "approved",
            ("bob", "carol"),
            None,
            "✅ *Approved* by bob, carol",
            "Approved by bob, carol (0123456 to production)",
        ),
        (
            "rejected",
            ("bob",),
            "not during <the> freeze",
            "🚫 *Rejected* by bob: not during &lt;the&gt; freeze",
            "Rejected by bob: not during &lt;the&gt; freeze (0123456 to production)",
        ),
        (
            "rejected",
            ("bob",),
            None,
            "🚫 *Rejected* by bob",
            "Rejected by bob (0123456 to production)",
        ),
        (
            "cancelled",
            (),
            "the pull request's head moved",
            "⚪ *Cancelled*: the pull request's head moved",
            "Cancelled: the pull request's head moved (0123456 to production)",
        ),
    ],
)
def test_decided(
    outcome: Any, by: tuple[str, ...], reason: str | None, verdict: str, text: str
) -> None:
    message = decided(make_request(), outcome, by=by, reason=reason, at=WHEN)
    assert_inert_and_valid(message)
    assert buttons(message) == []
    assert all(b["type"] != "actions" for b in message.blocks)
    first = message.blocks[0]["text"]["text"]
    assert first == (
        f"{verdict}\n*alice* asked to deploy `0123456` to *production* (<{PR_URL}|acme/api#12>)"
    )
    assert message.blocks[1]["elements"][0]["text"].startswith("Decided <!date^1714566600^")
    assert message.text == text


# --------------------------------------------------------------------------- properties

FRAGMENTS = [
    "<!channel>", "<@U123>", "<http://evil|click>", "&", "&amp;", "<", ">", "|", "`", "*",
    "\n", " ", "é", "🚀", "production", "<!date^1^{time}|x>",
]  # fmt: skip
outside_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join),
    # Long runs cost hypothesis little to build and test every cut near a limit.
    st.builds(
        lambda piece, count: piece * count,
        st.sampled_from(["&", "<", ">", "x<", "&x", "🚀"]),
        st.integers(min_value=100, max_value=4_000),
    ),
)
maybe_text = st.none() | outside_text
statuses = st.none() | st.sampled_from([s for s, _, _ in STATUS_LINES if s]) | outside_text
urls = st.none() | st.sampled_from([PR_URL, "https://ci.example/1"]) | outside_text
times = st.none() | st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
button_sets = st.lists(st.sampled_from(ACTIONS), unique=True, max_size=6).flatmap(
    lambda actions: st.tuples(
        *(
            st.builds(
                Button,
                action=st.just(a),
                value=st.text(min_size=1, max_size=50),
                confirm=st.booleans(),
                target=maybe_text,
                label=maybe_text,
            )
            for a in actions
        )
    )
)
environment_lines = st.builds(
    EnvironmentLine,
    name=outside_text,
    status=statuses,
    commit_sha=maybe_text,
    requested_by=maybe_text,
    updated_at=times,
    log_url=urls,
    environment_url=urls,
    detail=maybe_text,
    buttons=button_sets,
)
boards = st.builds(
    Board,
    repository=outside_text,
    pr_number=st.none() | st.integers(min_value=1, max_value=10**9),
    title=outside_text,
    author=outside_text,
    head_sha=outside_text,
    head_ref=outside_text,
    pr_url=urls,
    pr_state=st.sampled_from(["open", "closed", "merged"]),
    environments=st.lists(environment_lines, max_size=60).map(tuple),
)
requests = st.builds(
    ApprovalRequest,
    repository=outside_text,
    environment=outside_text,
    commit_sha=outside_text,
    requested_by=outside_text,
    required=st.integers(min_value=1, max_value=10),
    approve=st.builds(Button, action=st.just("approve"), value=st.just("a"), confirm=st.booleans()),
    reject=st.builds(Button, action=st.just("reject"), value=st.just("a"), confirm=st.booleans()),
    approved_by=st.lists(outside_text, max_size=10).map(tuple),
    approvers=st.lists(outside_text, max_size=60).map(tuple),
    pr_number=st.none() | st.integers(min_value=1, max_value=10**9),
    pr_url=urls,
    requested_at=times,
)


@settings(max_examples=200, deadline=None)
@given(boards)
def test_any_board_is_valid_and_inert(board: Board) -> None:
    assert_inert_and_valid(status_board(board))


@settings(max_examples=200, deadline=None)
@given(requests)
def test_any_approval_request_is_valid_and_inert(request: ApprovalRequest) -> None:
    assert_inert_and_valid(approval_request(request))


@settings(max_examples=200, deadline=None)
@given(
    requests,
    st.sampled_from(["approved", "rejected", "cancelled"]),
    st.lists(outside_text, max_size=10),
    maybe_text,
    times,
)
def test_any_decision_is_valid_and_inert(
    request: ApprovalRequest, outcome: Any, by: list[str], reason: str | None, at: datetime | None
) -> None:
    message = decided(request, outcome, by=by, reason=reason, at=at)
    assert_inert_and_valid(message)
    assert buttons(message) == []
