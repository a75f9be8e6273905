"""Lock reminders (pure): who is reminded when, what they are told, and each lock once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.pipeline.config import parse_pipeline
from bot.pipeline.effects import ChannelMessage
from bot.pipeline.locks import DEFAULT_TTL, Lock, notices, take
from bot.pipeline.models import Person

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
ALICE = Person(github="alice", slack="U0ALICE")
BOB = Person(github="bob")
REPO = "acme/api"


def lock(
    expires_in: timedelta | None, *, holder: Person = ALICE, reason: str | None = "db"
) -> Lock:
    since = NOW - timedelta(hours=23)
    expires = NOW + expires_in if expires_in is not None else None
    return Lock("production", holder, since=since, expires_at=expires, reason=reason)


@pytest.mark.parametrize(
    ("expires_in", "said"),
    [
        (None, None),  # never expires: nothing to remind of
        (timedelta(hours=3), None),  # too early
        (timedelta(hours=1, seconds=1), None),
        (timedelta(hours=1), "lock-reminder"),  # exactly an hour before
        (timedelta(minutes=30), "lock-reminder"),
        (timedelta(seconds=1), "lock-reminder"),
        (timedelta(0), "lock-expired"),  # expired at `now`: holds nothing any more
        (-timedelta(minutes=59), "lock-expired"),
        (-timedelta(hours=1), None),  # expired long ago: not announced late
        (-timedelta(days=2), None),
    ],
)
def test_which_locks_are_due(expires_in: timedelta | None, said: str | None) -> None:
    found = notices([(REPO, lock(expires_in))], NOW)
    kinds = [n.event.split(":", 1)[0] for n in found]
    assert kinds == ([] if said is None else [said])


def test_the_reminder_mentions_the_holder_and_how_to_renew() -> None:
    [notice] = notices([(REPO, lock(timedelta(hours=1)))], NOW)
    assert notice == ChannelMessage(
        REPO,
        notice.event,
        "⏰ <@U0ALICE> your lock on `production` of acme/api (db) expires at 10:00 UTC; "
        "`/deploy lock acme/api production` renews it.",
        mention="U0ALICE",
    )
    assert notice.key.startswith("channel:acme/api:lock-reminder:production:")


def test_a_holder_without_slack_is_named_by_login_and_without_a_reason() -> None:
    [notice] = notices([(REPO, lock(timedelta(minutes=10), holder=BOB, reason=None))], NOW)
    assert notice.text.startswith("⏰ bob your lock on `production` of acme/api expires at 09:10")
    assert notice.mention is None


def test_an_expired_lock_is_announced() -> None:
    [notice] = notices([(REPO, lock(-timedelta(minutes=1)))], NOW)
    assert notice.text == (
        "🔓 the lock on `production` of acme/api held by alice expired; deploys may go there again."
    )
    assert notice.mention is None


def test_the_same_lock_gives_the_same_key_at_every_tick() -> None:
    held = lock(timedelta(minutes=50))
    keys = {
        n.key
        for moment in range(0, 50, 5)
        for n in notices([(REPO, held)], NOW + timedelta(minutes=moment))
    }
    assert len(keys) == 1


def test_a_renewed_lock_is_reminded_again_before_its_new_expiry() -> None:
    pipeline = parse_pipeline("environments: [{name: production}]")
    first = lock(timedelta(minutes=30))
    [before] = notices([(REPO, first)], NOW)
    renewed = take(
        pipeline, environment="production", person=ALICE, existing=first, reason="db", now=NOW
    ).lock
    assert renewed is not None and renewed.since == first.since
    later = NOW + DEFAULT_TTL - timedelta(minutes=30)
    [after] = notices([(REPO, renewed)], later)
    assert after.key != before.key


def test_locks_of_several_repositories_each_get_their_own() -> None:
    found = notices(
        [(REPO, lock(timedelta(minutes=5))), ("acme/web", lock(timedelta(minutes=5), holder=BOB))],
        NOW,
    )
    assert [n.repository for n in found] == [REPO, "acme/web"]
    assert len({n.key for n in found}) == 2
