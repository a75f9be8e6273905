"""Repository freezes in the pure core: reading `until <time>`, and the rule in
`request_deploy` (refused while frozen unless forced, never for rollbacks)."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.pipeline import freezes
from bot.pipeline.config import parse_pipeline
from bot.pipeline.effects import ApprovalRequest, CreateDeployment, ThreadReply
from bot.pipeline.freezes import Freeze, parse_until
from bot.pipeline.machine import Release, request_deploy, request_rollback
from bot.pipeline.models import EnvironmentHistory, Kind, Person, Rollout, Status

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # a Sunday
BOB = Person(github="bob", slack="U0BOB")
ALICE = Person(github="alice")


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- reading the time ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("friday", at(2026, 11, 27)),
        ("Friday", at(2026, 11, 27)),
        ("fri", at(2026, 11, 27)),
        ("monday", at(2026, 11, 23)),
        ("sunday", at(2026, 11, 29)),  # today is Sunday: the next one
        ("18:00", at(2026, 11, 22, 18)),
        ("9:30", at(2026, 11, 23, 9, 30)),  # already past today: tomorrow
        ("12:00", at(2026, 11, 23, 12)),  # exactly now is not to come
        ("2026-12-01", at(2026, 12, 1)),
        ("2026-12-01T18:00", at(2026, 12, 1, 18)),
        ("2026-12-01t18:00", at(2026, 12, 1, 18)),
        ("2026-11-22T12:01", at(2026, 11, 22, 12, 1)),
        ("+2h", at(2026, 11, 22, 14)),
        ("+90m", at(2026, 11, 22, 13, 30)),
        ("+3d", at(2026, 11, 25, 12)),
        ("+1w", at(2026, 11, 29, 12)),
    ],
)
def test_times_read_relative_to_now_in_utc(text: str, expected: datetime) -> None:
    assert parse_until(text, now=NOW) == freezes.Until(at=expected)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-11-01", "`2026-11-01` (2026-11-01 00:00 UTC) is already past"),
        ("2026-11-22", "is already past"),
        ("2026-11-22T12:00", "is already past"),
        ("2026-11-22T11:59", "is already past"),
        ("someday", "`someday` is not a time deploybot reads"),
        ("25:00", "is not a time deploybot reads"),
        ("12:61", "is not a time deploybot reads"),
        ("2026-02-30", "is not a time deploybot reads"),
        ("2026-12-01T24:00", "is not a time deploybot reads"),
        ("+0h", "is not a time deploybot reads"),
        ("+2y", "is not a time deploybot reads"),
        ("-2h", "is not a time deploybot reads"),
        ("", "is not a time deploybot reads"),
    ],
)
def test_past_and_unreadable_times_are_refused_clearly(text: str, says: str) -> None:
    until = parse_until(text, now=NOW)
    assert until.at is None and until.error is not None and says in until.error
    if "not a time" in says:
        assert "`friday`, `18:00`, `2026-12-01`, `2026-12-01T18:00` or `+2h`" in until.error


def test_a_now_in_another_timezone_is_read_as_the_same_moment() -> None:
    stockholm = NOW.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Stockholm"))
    assert parse_until("18:00", now=stockholm).at == at(2026, 11, 22, 18)


moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)
forms = st.one_of(
    st.sampled_from(["mon", "tuesday", "wed", "thursday", "fri", "saturday", "sun"]),
    st.builds(lambda h, m: f"{h}:{m:02d}", st.integers(0, 23), st.integers(0, 59)),
    st.builds(lambda n, u: f"+{n}{u}", st.integers(1, 999), st.sampled_from("mhdw")),
)


@given(now=moments, text=forms)
def test_every_relative_form_is_after_now_and_within_a_week_or_its_length(
    now: datetime, text: str
) -> None:
    until = parse_until(text, now=now)
    assert until.at is not None and until.at > now
    if not text.startswith("+"):
        assert until.at - now <= timedelta(days=7)


# --- the rule --------------------------------------------------------------------------

PIPELINE = parse_pipeline(
    """
environments:
  - name: stage
  - name: production
    approvals: 1
    approvers: [carol]
"""
)
RELEASE = Release(id=7, repository="acme/api", commit_sha="a" * 40, pr_number=42)
FROZEN = Freeze(
    repository="acme/api",
    by=BOB,
    reason="release week",
    until=at(2026, 12, 1, 18),
    since=NOW - timedelta(hours=1),
)


def ask(environment: str = "stage", **kwargs):
    args = dict(
        pipeline=PIPELINE,
        release=RELEASE,
        environment=environment,
        requester=ALICE,
        target=EnvironmentHistory(),
        succeeded_here=frozenset({"stage"}),
        rollout_id=100,
        now=NOW,
    )
    return request_deploy(**{**args, **kwargs})


@pytest.mark.parametrize(
    ("freeze", "force", "now", "refused"),
    [
        (None, False, NOW, False),
        (FROZEN, False, NOW, True),
        (FROZEN, True, NOW, False),
        (FROZEN, False, at(2026, 12, 1, 17, 59), True),
        (FROZEN, False, at(2026, 12, 1, 18), False),  # it has ended
        (FROZEN, False, at(2027, 1, 1), False),
    ],
)
@pytest.mark.parametrize("environment", ["stage", "production"])
def test_a_freeze_refuses_every_environment_until_it_ends_unless_forced(
    freeze, force: bool, now: datetime, refused: bool, environment: str
) -> None:
    outcome = ask(environment, freeze=freeze, force=force, now=now)
    assert outcome.refused is refused
    if refused:
        assert outcome.refusal == (
            "`acme/api` is frozen until 2026-12-01 18:00 UTC by bob: release week. "
            "Ask an admin to `--force`, or wait."
        )
        assert outcome.rollouts == () and outcome.effects == ()


def test_an_unknown_environment_is_named_before_the_freeze() -> None:
    outcome = ask("qa", freeze=FROZEN)
    assert "`qa` is not an environment here" in (outcome.refusal or "")


@pytest.mark.parametrize(
    ("environment", "then"), [("stage", CreateDeployment), ("production", ApprovalRequest)]
)
def test_forcing_past_a_freeze_is_said_in_the_thread(environment: str, then: type) -> None:
    outcome = ask(environment, freeze=FROZEN, force=True)
    assert not outcome.refused and len(outcome.rollouts) == 1
    said = [e for e in outcome.effects if isinstance(e, ThreadReply)]
    assert any(
        "alice used `--force` past the freeze" in e.text and "release week" in e.text for e in said
    )
    assert any(isinstance(e, then) for e in outcome.effects)
    # Each effect keeps its own idempotency key.
    keys = [e.key for e in outcome.effects]
    assert len(set(keys)) == len(keys)


def test_forcing_without_a_freeze_adds_no_note() -> None:
    outcome = ask(force=True)
    assert not any("freeze" in getattr(e, "text", "") for e in outcome.effects)


def test_a_freeze_never_reaches_rollbacks() -> None:
    # A rollback has no freeze to obey: the rule is not even a parameter.
    assert "freeze" not in inspect.signature(request_rollback).parameters
    current = Rollout(
        id=100,
        repository="acme/api",
        environment="production",
        commit_sha="a" * 40,
        status=Status.SUCCESS,
        requested_by=ALICE,
        created_at=NOW,
    )
    outcome = request_rollback(
        pipeline=PIPELINE,
        release=RELEASE,
        current=current,
        target_sha="b" * 40,
        requester=ALICE,
        rollout_id=300,
        now=NOW,
    )
    assert not outcome.refused and outcome.rollouts[0].kind is Kind.ROLLBACK


def test_announcements_name_who_until_and_why() -> None:
    said = freezes.announce(FROZEN)
    assert "bob froze `acme/api` until 2026-12-01 18:00 UTC: release week" in said
    later = Freeze("acme/api", ALICE, "still", at(2026, 12, 3), NOW)
    assert "(instead of until 2026-12-01 18:00 UTC)" in freezes.announce(later, replaced=FROZEN)
    lifted = freezes.announce_lifted(FROZEN, ALICE, "acme/api")
    assert lifted is not None and "alice lifted the freeze on `acme/api` (set by bob" in lifted
    assert freezes.announce_lifted(None, ALICE, "acme/api") is None
