"""The App Home tab and `/deploy status owner/repo`: builders, button rules, and the whole
read from both databases, checked with the Slack emulator's Block Kit rules."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.pipeline.commands import SLACK_USAGE
from bot.pipeline.config import parse_pipeline
from bot.pipeline.models import Decision, Kind, Person, Rollout, Status
from bot.slack.blocks import (
    ACTIONS,
    ApprovalNote,
    Button,
    EnvironmentStatus,
    LockNote,
    Message,
    RepositoryStatus,
    home_view,
    repository_line,
    repository_status,
    thread_url,
)
from bot.slack.home import home_for, repository_status_of, status_message
from integrations.emulators.slack import block_kit_errors, view_errors
from storage import db
from storage.models import Approval, ChannelSubscription, Lock, Release
from storage.models import Rollout as RolloutRow
from storage.overview import (
    EnvironmentOverview,
    LockSummary,
    PendingApproval,
    ReleaseSummary,
    RepositoryOverview,
    RolloutSummary,
)
from tests.slack.test_blocks import (
    ENTITY,
    HOSTILE,
    OUR_DATE,
    OUR_LINK,
    maybe_text,
    outside_text,
    times,
    urls,
    walk,
)

PR_URL = "https://github.com/acme/api/pull/12"
THREAD = "https://slack.com/archives/C0123/p1714566600000100"
WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
DATE = "<!date^1714566600^{date_short_pretty} {time}|2024-05-01 12:30 UTC>"
HEAD = "a" * 40


def mrkdwn_texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [d["text"] for d in walk(blocks) if d.get("type") == "mrkdwn"]


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in walk(blocks) if d.get("type") == "button"]


def assert_inert(blocks: list[dict[str, Any]], *texts: str, usage: str = SLACK_USAGE) -> None:
    """Outside text renders inert: no `<` or `>` but our links and dates; `&` only as an
    entity. The usage text is ours (it holds `<owner/repo>` on purpose)."""
    for text in [*texts, *mrkdwn_texts(blocks)]:
        if text == usage:
            continue
        rest = OUR_DATE.sub("", OUR_LINK.sub("", text))
        assert "<" not in rest, text
        assert ">" not in rest, text
        assert not ENTITY.search(text), text
        for live in ("<!channel>", "<@U123>", "<http://evil", "<!here>", "<#C123"):
            assert live not in text
    for d in walk(blocks):
        if d.get("type") == "mrkdwn":
            assert d.get("verbatim") is True


def assert_valid_message(message: Message) -> None:
    assert block_kit_errors(message.blocks, surface="message") == []
    assert 0 < len(message.text) <= 200
    assert_inert(message.blocks, message.text)


def assert_valid_home(view: dict[str, Any]) -> None:
    assert view_errors(view, kinds=("home",)) == ([], [])
    assert len(view["blocks"]) <= 100
    assert_inert(view["blocks"])
    block_ids = [b["block_id"] for b in view["blocks"] if "block_id" in b]
    assert len(block_ids) == len(set(block_ids))
    for block in view["blocks"]:
        if block["type"] == "actions":
            ids = [e["action_id"] for e in block["elements"]]
            assert len(ids) == len(set(ids))


def make_env(**changes: Any) -> EnvironmentStatus:
    env = EnvironmentStatus(
        name="stage",
        status="success",
        commit_sha="0123456789abcdef",
        requested_by="alice",
        updated_at=WHEN,
        pr_number=12,
        title="Fix login",
        pr_url=PR_URL,
        thread_url=THREAD,
    )
    return replace(env, **changes)


def shown_repositories(view: dict[str, Any]) -> list[str]:
    return [
        m.group(1)
        for text in mrkdwn_texts(view["blocks"])
        if (m := re.match(r"📦 \*([^*]+)\*", text))
    ]


def left_out_note(blocks: list[dict[str, Any]]) -> int:
    for text in mrkdwn_texts(blocks):
        if m := re.match(r"(\d+) more repositor(?:y|ies) not shown", text):
            return int(m.group(1))
    return 0


# --------------------------------------------------------------------------- thread links


@pytest.mark.parametrize(
    ("channel", "ts", "team", "url"),
    [
        ("C0123", "1714566600.000100", None, THREAD),
        ("G0123", "1.2", "https://acme.slack.com/", "https://acme.slack.com/archives/G0123/p12"),
        ("C0123", "1.2", "https://acme.slack.com", "https://acme.slack.com/archives/C0123/p12"),
        ("C0123", "1.2", "javascript:x", "https://slack.com/archives/C0123/p12"),
        ("C0123", None, None, None),
        (None, "1.2", None, None),
        ("#general", "1.2", None, None),
        ("C0123|<!channel>", "1.2", None, None),
        ("C0123", "1.2>", None, None),
        ("C0123", "12", None, None),
    ],
)
def test_thread_url(channel: str | None, ts: str | None, team: str | None, url: str | None) -> None:
    assert thread_url(channel, ts, team_url=team) == url


# --------------------------------------------------------------------------- /deploy status


def test_repository_line_layout() -> None:
    assert repository_line(make_env()) == (
        f"✅ *stage*: deployed · `0123456` · by alice · {DATE} · "
        f"<{PR_URL}|#12 Fix login> · <{THREAD}|thread>"
    )


def test_repository_line_with_everything() -> None:
    env = make_env(
        name="production",
        status="awaiting_approval",
        last_status="success",
        last_sha="fedcba9876",
        approval=ApprovalNote(1, 2, ("bob",)),
        lock=LockNote("dave", since=WHEN, expires_at=WHEN + timedelta(days=1), reason="migration"),
    )
    line = repository_line(env)
    first, before, approvals, lock = line.split("\n")
    assert first.startswith("✋ *production*: awaiting approval · `0123456` · by alice")
    assert before == "↳ before: ✅ deployed `fedcba9`"
    assert approvals == "✋ *Approvals:* 1 of 2 (by bob)"
    assert lock == (
        f"🔒 *Locked* by dave since {DATE} until "
        "<!date^1714653000^{date_short_pretty} {time}|2024-05-02 12:30 UTC>: migration"
    )


def test_a_change_without_a_pull_request_or_links() -> None:
    env = make_env(pr_number=None, title="Bump deps", pr_url=None, thread_url=None)
    assert repository_line(env).endswith(f"{DATE} · Bump deps")
    env = make_env(
        pr_number=None, title="", pr_url="https://github.com/acme/api/commit/abc", thread_url=None
    )
    assert repository_line(env).endswith("|commit>")
    assert repository_line(EnvironmentStatus("dev")) == "▫️ *dev*: not deployed"


def test_repository_status_layout() -> None:
    message = status_message_of(
        RepositoryStatus("acme/api", (make_env(name="dev"), make_env(), EnvironmentStatus("prod")))
    )
    header, section = message.blocks
    assert header["text"]["text"] == "acme/api"
    assert section["text"]["text"].split("\n") == [
        repository_line(make_env(name="dev")),
        repository_line(make_env()),
        "▫️ *prod*: not deployed",
    ]
    assert message.text == "acme/api: dev deployed, stage deployed, prod not deployed"
    assert buttons(message.blocks) == []


def status_message_of(repository: RepositoryStatus) -> Message:
    message = repository_status(repository)
    assert_valid_message(message)
    return message


def test_repository_status_without_environments_and_with_a_broken_pipeline() -> None:
    message = status_message_of(RepositoryStatus("acme/api", problem="line 3: bogus: <unknown>"))
    assert [mrkdwn_texts(message.blocks)] == [
        [
            "⚠️ The pipeline file is invalid, so nothing deploys: line 3: bogus: &lt;unknown&gt;",
            "Nothing deployed yet.",
        ]
    ]
    assert message.text == "acme/api: nothing deployed yet"


def test_repository_status_shows_no_buttons_even_when_given() -> None:
    env = make_env(buttons=(Button("rollback", "rollback:1:stage"),))
    assert buttons(status_message_of(RepositoryStatus("acme/api", (env,))).blocks) == []


def test_many_long_lines_are_packed_and_counted() -> None:
    hostile = "<" * 3_000
    env = make_env(
        name=hostile,
        requested_by=hostile,
        title=hostile,
        pr_url="https://x.example/" + "a" * 480,
        thread_url="https://x.example/" + "b" * 480,
        last_status=hostile,
        last_sha=hostile,
        approval=ApprovalNote(3, 5, (hostile,) * 50),
        lock=LockNote(hostile, WHEN, WHEN, hostile),
    )
    assert len(repository_line(env)) <= 3_000
    message = status_message_of(RepositoryStatus(hostile, (env,) * 80))
    assert len(message.blocks) == 50
    note = mrkdwn_texts(message.blocks)[-1]
    match = re.fullmatch(
        r"(\d+) more environments not shown: use `/deploy status .*` for all.*", note
    )
    assert match
    assert int(match.group(1)) == 80 - 48


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_text_in_repository_status(hostile: str) -> None:
    env = EnvironmentStatus(
        name=hostile,
        status=hostile,
        commit_sha=hostile,
        requested_by=hostile,
        updated_at=WHEN,
        pr_number=12,
        title=hostile,
        pr_url=hostile,
        thread_url=hostile,
        last_status=hostile,
        last_sha=hostile,
        lock=LockNote(hostile, WHEN, None, hostile),
        approval=ApprovalNote(1, 2, (hostile, hostile)),
    )
    status_message_of(RepositoryStatus(hostile, (env, env), problem=hostile))


# --------------------------------------------------------------------------- App Home


def test_home_without_repositories_is_the_old_tab() -> None:
    for view in (home_view(SLACK_USAGE), home_view("`/deploy help`")):
        assert_valid_home(view)
        assert view["blocks"][0]["text"]["text"] == "deploybot"
        assert "/deploy subscribe owner/repo" in view["blocks"][1]["text"]["text"]
        assert view["blocks"][-1]["text"]["text"] in (SLACK_USAGE, "`/deploy help`")


def test_home_layout_and_buttons() -> None:
    stage = make_env(
        buttons=(
            Button("promote", "promote:7:production", confirm=True, target="production"),
            Button("rollback", "rollback:7:stage", confirm=True),
        )
    )
    production = make_env(
        name="production",
        status="awaiting_approval",
        approval=ApprovalNote(0, 1),
        buttons=(
            Button("approve", "rollout:9", confirm=True),
            Button("reject", "rollout:9", confirm=True),
        ),
    )
    repositories = [
        RepositoryStatus("acme/api", (make_env(name="dev"), stage, production)),
        RepositoryStatus("acme/web"),
    ]
    view = home_view(SLACK_USAGE, repositories)
    assert_valid_home(view)
    kinds = [b["type"] for b in view["blocks"]]
    assert kinds == [
        "header",
        "context",
        "divider",
        "section",  # title, dev and stage
        "actions",  # stage's buttons
        "section",  # production
        "actions",
        "divider",
        "section",  # acme/web
        "divider",
        "section",  # usage
    ]
    first = view["blocks"][3]["text"]["text"].split("\n")
    assert first == [
        "📦 *acme/api*",
        repository_line(make_env(name="dev")),
        repository_line(stage),
    ]
    assert view["blocks"][4]["block_id"] == "home:0:1"
    assert view["blocks"][6]["block_id"] == "home:0:2"
    got = [
        (b["action_id"], b["value"], b["text"]["text"], b["confirm"]["title"]["text"])
        for b in buttons(view["blocks"])
    ]
    assert got == [
        ("promote", "promote:7:production", "Promote to production", "Deploy to production?"),
        ("rollback", "rollback:7:stage", "Roll back", "Roll back stage?"),
        ("approve", "rollout:9", "Approve", "Approve deploy to production?"),
        ("reject", "rollout:9", "Reject", "Reject deploy to production?"),
    ]
    assert view["blocks"][8]["text"]["text"] == "📦 *acme/web*\nNothing deployed yet."
    assert view["blocks"][-1]["text"]["text"] == SLACK_USAGE
    assert shown_repositories(view) == ["acme/api", "acme/web"]
    assert left_out_note(view["blocks"]) == 0


def worst_repository(index: int, environments: int = 6) -> RepositoryStatus:
    """Every environment with two buttons, a lock and an approval note."""
    envs = tuple(
        make_env(
            name=f"env-{e}",
            lock=LockNote("bob", WHEN, WHEN, "migration"),
            approval=ApprovalNote(1, 2, ("carol",)),
            buttons=(Button("approve", f"rollout:{e}"), Button("reject", f"rollout:{e}")),
        )
        for e in range(environments)
    )
    return RepositoryStatus(f"acme/repo-{index:02}", envs)


@pytest.mark.parametrize("more", [0, 18])
def test_thirty_repositories_of_six_environments_stay_a_valid_home_tab(more: int) -> None:
    repositories = [worst_repository(i) for i in range(30)]
    view = home_view(SLACK_USAGE, repositories, more=more)
    assert_valid_home(view)
    shown = shown_repositories(view)
    assert shown == [r.repository for r in repositories[: len(shown)]]
    # The last one shown may be cut short; it says so and counts as shown.
    last_note = [t for t in mrkdwn_texts(view["blocks"]) if "more environment" in t]
    assert len(last_note) <= 1
    assert left_out_note(view["blocks"]) == 30 - len(shown) + more
    assert len(shown) >= 6
    assert view["blocks"][-1]["text"]["text"] == SLACK_USAGE


def test_quiet_repositories_take_two_blocks_each() -> None:
    repositories = [
        RepositoryStatus(f"acme/repo-{i:02}", tuple(make_env(name=f"env-{e}") for e in range(6)))
        for i in range(30)
    ]
    view = home_view(SLACK_USAGE, repositories)
    assert_valid_home(view)
    assert len(shown_repositories(view)) == 30
    assert len(view["blocks"]) == 2 + 30 * 2 + 2


def test_one_huge_repository_is_cut_with_a_note() -> None:
    view = home_view(SLACK_USAGE, [worst_repository(0, environments=80), worst_repository(1)])
    assert_valid_home(view)
    assert shown_repositories(view) == ["acme/repo-00"]
    texts = mrkdwn_texts(view["blocks"])
    assert any(
        re.match(r".*\d+ more environments not shown: use `/deploy status acme/repo-00`", t, re.S)
        for t in texts
    )
    assert left_out_note(view["blocks"]) == 1


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_text_in_the_home_tab(hostile: str) -> None:
    env = EnvironmentStatus(
        name=hostile,
        status=hostile,
        commit_sha=hostile,
        requested_by=hostile,
        updated_at=WHEN,
        title=hostile,
        pr_url=hostile,
        thread_url=hostile,
        lock=LockNote(hostile, reason=hostile),
        approval=ApprovalNote(0, 1, (hostile,)),
        buttons=tuple(
            Button(a, (hostile or "v")[:2000], confirm=True, target=hostile) for a in ACTIONS
        ),
    )
    view = home_view(SLACK_USAGE, [RepositoryStatus(hostile, (env,) * 3, problem=hostile)] * 5)
    assert_valid_home(view)


# --------------------------------------------------------------------------- properties

lock_notes = st.none() | st.builds(
    LockNote, holder=outside_text, since=times, expires_at=times, reason=maybe_text
)
approval_notes = st.none() | st.builds(
    ApprovalNote,
    given=st.integers(min_value=-1, max_value=20),
    needed=st.integers(min_value=0, max_value=20),
    approved_by=st.lists(outside_text, max_size=20).map(tuple),
)
button_sets = st.lists(st.sampled_from(ACTIONS), unique=True, max_size=6).map(
    lambda actions: tuple(Button(a, f"{a}:1:x", confirm=a == "promote") for a in actions)
)
environment_statuses = st.builds(
    EnvironmentStatus,
    name=outside_text,
    status=st.none() | st.sampled_from(["success", "failure", "awaiting_approval"]) | outside_text,
    commit_sha=maybe_text,
    requested_by=maybe_text,
    updated_at=times,
    pr_number=st.none() | st.integers(min_value=1, max_value=10**9),
    title=maybe_text,
    pr_url=urls,
    thread_url=urls,
    last_status=st.none() | outside_text,
    last_sha=maybe_text,
    lock=lock_notes,
    approval=approval_notes,
    buttons=button_sets,
)
repository_statuses = st.builds(
    RepositoryStatus,
    repository=outside_text,
    environments=st.lists(environment_statuses, max_size=10).map(tuple),
    problem=maybe_text,
)


@settings(max_examples=100, deadline=None)
@given(repository_statuses)
def test_any_repository_status_is_valid_and_inert(repository: RepositoryStatus) -> None:
    status_message_of(repository)
    for env in repository.environments:
        assert len(repository_line(env)) <= 3_000


@settings(max_examples=60, deadline=None)
@given(st.lists(repository_statuses, max_size=8), st.integers(min_value=0, max_value=50))
def test_any_home_tab_is_valid_and_counts_what_it_leaves_out(
    repositories: list[RepositoryStatus], more: int
) -> None:
    view = home_view(SLACK_USAGE, repositories, more=more)
    assert_valid_home(view)
    titles = sum(1 for t in mrkdwn_texts(view["blocks"]) if t.startswith("📦 *"))
    assert titles + left_out_note(view["blocks"]) == len(repositories) + more


# --------------------------------------------------------------------------- button rules


def summary(
    environment: str,
    status: Status,
    *,
    rollout_id: int = 1,
    release_id: int = 7,
    commit_sha: str = HEAD,
    head: str = HEAD,
    kind: Kind = Kind.DEPLOY,
    decisions: tuple[Decision, ...] = (),
) -> RolloutSummary:
    rollout = Rollout(
        id=rollout_id,
        repository="acme/api",
        environment=environment,
        commit_sha=commit_sha,
        status=status,
        requested_by=Person(github="alice"),
        created_at=WHEN,
        kind=kind,
        decisions=decisions,
    )
    release = ReleaseSummary(release_id, head, 12, PR_URL, "Fix login", "C0123", "1.2")
    return RolloutSummary(rollout, release, WHEN)


def overview(*envs: EnvironmentOverview, error: str | None = None) -> RepositoryOverview:
    names = () if error else ("dev", "stage", "production")
    pipeline = None if error else parse_pipeline("")  # the default: production approves
    return RepositoryOverview(
        "acme/api", tuple(envs), pipeline_error=error, pipeline_names=names, pipeline=pipeline
    )


def offered(repo: RepositoryOverview, name: str) -> list[tuple[str, str, bool]]:
    status = repository_status_of(repo, buttons=True)
    env = next(e for e in status.environments if e.name == name)
    return [(b.action, b.value, b.confirm) for b in env.buttons]


BUTTON_RULES = [
    (
        "succeeded at the head: promote and roll back",
        EnvironmentOverview("dev", last=summary("dev", Status.SUCCESS)),
        "dev",
        [("promote", "promote:7:stage", False), ("rollback", "rollback:7:dev", False)],
    ),
    (
        "promoting into production confirms",
        EnvironmentOverview("stage", last=summary("stage", Status.SUCCESS)),
        "stage",
        [("promote", "promote:7:production", True), ("rollback", "rollback:7:stage", False)],
    ),
    (
        "the last environment has nowhere to promote to",
        EnvironmentOverview("production", last=summary("production", Status.SUCCESS)),
        "production",
        [("rollback", "rollback:7:production", True)],
    ),
    (
        "the head moved on: no promote",
        EnvironmentOverview("dev", last=summary("dev", Status.SUCCESS, head="b" * 40)),
        "dev",
        [("rollback", "rollback:7:dev", False)],
    ),
    (
        "failed: roll back only",
        EnvironmentOverview("dev", last=summary("dev", Status.FAILURE)),
        "dev",
        [("rollback", "rollback:7:dev", False)],
    ),
    (
        "verifying: roll back only",
        EnvironmentOverview("dev", active=summary("dev", Status.VERIFYING)),
        "dev",
        [("rollback", "rollback:7:dev", False)],
    ),
    (
        "deploying or rolled back: nothing",
        EnvironmentOverview("dev", active=summary("dev", Status.IN_PROGRESS)),
        "dev",
        [],
    ),
    (
        "a rollback's own rollout: nothing (as on the thread board)",
        EnvironmentOverview("dev", last=summary("dev", Status.SUCCESS, kind=Kind.ROLLBACK)),
        "dev",
        [],
    ),
    (
        "awaiting approval in production: approve and reject, confirmed",
        EnvironmentOverview(
            "production",
            active=summary("production", Status.AWAITING_APPROVAL, rollout_id=9),
            last=summary("production", Status.SUCCESS, rollout_id=3),
            pending=PendingApproval(9, 7, HEAD, Person(github="alice"), (), 1),
        ),
        "production",
        [("approve", "rollout:9", True), ("reject", "rollout:9", True)],
    ),
    ("never deployed: nothing", EnvironmentOverview("dev"), "dev", []),
]


@pytest.mark.parametrize(
    ("case", "env", "name", "expected"), BUTTON_RULES, ids=[r[0] for r in BUTTON_RULES]
)
def test_button_rules(
    case: str, env: EnvironmentOverview, name: str, expected: list[tuple[str, str, bool]]
) -> None:
    repo = overview(env)
    assert offered(repo, name) == expected
    assert_valid_home(home_view(SLACK_USAGE, [repository_status_of(repo, buttons=True)]))


def test_no_promote_where_the_next_environment_already_has_the_commit() -> None:
    dev = EnvironmentOverview("dev", last=summary("dev", Status.SUCCESS))
    for status in (Status.SUCCESS, Status.VERIFYING):
        stage = EnvironmentOverview("stage", last=summary("stage", status, rollout_id=2))
        assert [a for a, _, _ in offered(overview(dev, stage), "dev")] == ["rollback"]
    older = EnvironmentOverview("stage", last=summary("stage", Status.SUCCESS, commit_sha="b" * 40))
    assert [a for a, _, _ in offered(overview(dev, older), "dev")] == ["promote", "rollback"]


def test_no_buttons_while_the_pipeline_file_is_invalid_or_for_status() -> None:
    dev = EnvironmentOverview("dev", last=summary("dev", Status.FAILURE))
    broken = overview(dev, error="line 2: environments[0].bogus: unknown key\nline 3: more")
    status = repository_status_of(broken, buttons=True)
    assert status.environments[0].buttons == ()
    assert status.problem == "line 2: environments[0].bogus: unknown key (and 1 more)"
    assert repository_status_of(overview(dev), buttons=False).environments[0].buttons == ()


def test_what_an_environment_shows() -> None:
    approved = Decision(Person(github="bob"), True, HEAD, WHEN)
    env = EnvironmentOverview(
        "production",
        active=summary("production", Status.AWAITING_APPROVAL, rollout_id=9, decisions=(approved,)),
        last=summary("production", Status.SUCCESS, rollout_id=3, commit_sha="b" * 40),
        lock=LockSummary(Person(slack="U0DAVE"), "migration", WHEN, None),
        pending=PendingApproval(9, 7, HEAD, Person(github="alice"), (Person(github="bob"),), 2),
    )
    [shown] = repository_status_of(overview(env), buttons=False, team_url=None).environments
    assert shown == EnvironmentStatus(
        name="production",
        status="awaiting_approval",
        commit_sha=HEAD,
        requested_by="alice",
        updated_at=WHEN,
        pr_number=12,
        title="Fix login",
        pr_url=PR_URL,
        thread_url="https://slack.com/archives/C0123/p12",
        last_status="success",
        last_sha="b" * 40,
        lock=LockNote("U0DAVE", WHEN, None, "migration"),
        approval=ApprovalNote(1, 2, ("bob",)),
    )
    message = status_message(overview(env), team_url="https://acme.slack.com/")
    assert_valid_message(message)
    assert "<https://acme.slack.com/archives/C0123/p12|thread>" in message.blocks[1]["text"]["text"]


# --------------------------------------------------------------------------- from the database

PIPELINE = """\
environments:
  - name: stage
  - name: production
    approvals: 1
"""


async def test_home_for_reads_every_subscribed_repository(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    async with sessions.begin() as session:
        session.add(ChannelSubscription(repository="acme/web", channel_id="C1", created_by="U1"))
        release = Release(
            repository="acme/api",
            pr_number=12,
            commit_sha=HEAD,
            pr_url=PR_URL,
            title="<!channel> Fix login",
            pipeline=PIPELINE,
            thread_channel="C0123",
            thread_ts="1714566600.000100",
        )
        broken = Release(
            repository="acme/web",
            pr_number=3,
            commit_sha=HEAD,
            title="Broken",
            pipeline="environments: [",
        )
        session.add_all([release, broken])
        await session.flush()
        assert release.id is not None and broken.id is not None
        session.add(
            RolloutRow(
                release_id=release.id,
                repository="acme/api",
                environment="stage",
                commit_sha=HEAD,
                status="success",
                requested_by_github="alice",
            )
        )
        waiting = RolloutRow(
            release_id=release.id,
            repository="acme/api",
            environment="production",
            commit_sha=HEAD,
            status="awaiting_approval",
            requested_by_github="alice",
        )
        session.add(waiting)
        session.add(
            RolloutRow(
                release_id=broken.id,
                repository="acme/web",
                environment="stage",
                commit_sha=HEAD,
                status="failure",
            )
        )
        session.add(Lock(repository="acme/api", environment="stage", holder_github="<@U123>"))
        await session.flush()
        assert waiting.id is not None
        session.add(
            Approval(
                rollout_id=waiting.id,
                approver="github:bob",
                approver_github="bob",
                approve=False,
                commit_sha=HEAD,
            )
        )

    view = await home_for(sessions, user="U0ALICE", may_read=everyone)
    assert_valid_home(view)
    assert shown_repositories(view) == ["acme/api", "acme/web"]
    got = [(b["action_id"], b["value"]) for b in buttons(view["blocks"])]
    assert got == [
        ("rollback", f"rollback:{release.id}:stage"),
        ("approve", f"rollout:{waiting.id}"),
        ("reject", f"rollout:{waiting.id}"),
    ]
    text = "\n".join(mrkdwn_texts(view["blocks"]))
    assert f"<{PR_URL}|#12 &lt;!channel&gt; Fix login>" in text
    assert "🔒 *Locked* by &lt;@U123&gt;" in text
    assert "✋ *Approvals:* 0 of 1" in text
    assert "⚠️ The pipeline file is invalid" in text
    # Promote is not offered: production already waits for this commit.
    assert "promote" not in {b["action_id"] for b in buttons(view["blocks"])}


async def test_thirty_repositories_from_the_database(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    names = ["dev", "qa", "stage", "canary", "eu-production", "production"]
    pipeline = "environments:\n" + "".join(f"  - name: {n}\n" for n in names)
    async with sessions.begin() as session:
        releases = [
            Release(
                repository=f"acme/repo-{i:02}",
                pr_number=1,
                commit_sha=HEAD,
                pipeline=pipeline,
                thread_channel="C0123",
                thread_ts="1.2",
            )
            for i in range(30)
        ]
        session.add_all(releases)
        await session.flush()
        for release in releases:
            assert release.id is not None
            for name in names:
                session.add(
                    RolloutRow(
                        release_id=release.id,
                        repository=release.repository,
                        environment=name,
                        commit_sha="b" * 40 if name == "production" else HEAD,
                        status="success",
                    )
                )
    view = await home_for(
        sessions, user="U0ALICE", may_read=everyone, team_url="https://acme.slack.com/"
    )
    assert_valid_home(view)
    shown = shown_repositories(view)
    assert shown[0] == "acme/repo-00"
    assert left_out_note(view["blocks"]) == 30 - len(shown)


async def test_home_for_survives_a_database_without_tables(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        view = await home_for(db.session_factory(engine), user="U0ALICE", may_read=everyone)
    finally:
        await engine.dispose()
    assert view_errors(view, kinds=("home",)) == ([], [])
    assert "Could not read the repositories" in view["blocks"][-1]["text"]["text"]


async def everyone(_overview: RepositoryOverview) -> bool:
    return True


async def test_home_for_shows_only_what_the_viewer_may_read(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    async with sessions.begin() as session:
        for name in ("acme/open", "acme/secret"):
            session.add(ChannelSubscription(repository=name, channel_id="C1", created_by="U1"))

    async def only_open(overview: RepositoryOverview) -> bool:
        return overview.repository == "acme/open"

    view = await home_for(sessions, user="U0ALICE", may_read=only_open)
    assert_valid_home(view)
    assert "acme/open" in str(view["blocks"]) and "acme/secret" not in str(view["blocks"])
