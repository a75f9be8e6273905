"""Which GitHub login a Slack user is: links that GitHub itself confirmed.

`/deploy link <github-login>` in Slack only *asks* (`start_link`): it keeps the login as
pending and hands back a one-time code. The link is trusted once that GitHub user comments
`/deploy link <code>` on a pull request (`confirm_link`): the comment proves control of the
GitHub account, so a link never rests on the Slack user's word alone.

Only a SHA-256 of the code is stored. Codes are short enough to type (10 characters of
Crockford's base32: 50 bits), last an hour and work once; typing them in lower case, with
hyphens, or with `O`/`I`/`L` for `0`/`1` still works. One GitHub login belongs to one Slack
user: confirming it for one moves it away from any other.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from storage import db
from storage.models import IdentityLink

CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32: no I, L, O, U
CODE_LENGTH = 10
DEFAULT_TTL = timedelta(hours=1)
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})


class LinkOutcome(enum.StrEnum):
    CONFIRMED = "confirmed"
    UNKNOWN = "unknown"  # no pending link has this code: mistyped, used, or replaced
    EXPIRED = "expired"
    WRONG_LOGIN = "wrong_login"  # the code asks for another GitHub login; still pending


@dataclass(frozen=True)
class LinkResult:
    """What a code comment did. `slack_user` and `login` are set only when CONFIRMED, so a
    refusal never tells the commenter whose code it was."""

    outcome: LinkOutcome
    slack_user: str | None = None
    login: str | None = None

    @property
    def confirmed(self) -> bool:
        return self.outcome is LinkOutcome.CONFIRMED


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(code: str) -> str:
    """The code as generated, from how people type it (`7k3q-d9xw2m`, `O` for `0`)."""
    return code.strip().upper().translate(_LOOKALIKES)


def code_hash(code: str) -> str:
    return hashlib.sha256(normalize_code(code).encode()).hexdigest()


async def start_link(
    session: AsyncSession,
    *,
    slack_user: str,
    github_login: str,
    now: datetime,
    ttl: timedelta = DEFAULT_TTL,
) -> str:
    """Ask to link `slack_user` to `github_login`; the code that GitHub user must comment.

    Replaces any earlier pending code of this Slack user. A confirmed login stays trusted
    until the new one is confirmed."""
    code = new_code()
    await session.execute(
        db.insert(session, IdentityLink)
        .values(slack_user=slack_user, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["slack_user"])
    )
    await session.execute(
        sa.update(IdentityLink)
        .where(IdentityLink.slack_user == slack_user)
        .values(
            pending_login=github_login,
            code_hash=code_hash(code),
            code_expires_at=now + ttl,
            updated_at=now,
        )
    )
    return code


async def confirm_link(
    session: AsyncSession, *, code: str, github_login: str, now: datetime
) -> LinkResult:
    """`github_login` commented `code`: link it to the Slack user who asked, if the code is
    live and was made for that login (compared ignoring case). A code works once."""
    row = (
        await session.execute(
            sa.select(IdentityLink)
            .where(IdentityLink.code_hash == code_hash(code))
            .with_for_update()
        )
    ).scalar_one_or_none()
    if row is None or row.pending_login is None:
        return LinkResult(LinkOutcome.UNKNOWN)
    if row.code_expires_at is None or row.code_expires_at <= now:
        _clear_pending(row, now)
        await session.flush()
        return LinkResult(LinkOutcome.EXPIRED)
    if row.pending_login.lower() != github_login.lower():
        return LinkResult(LinkOutcome.WRONG_LOGIN)
    # One GitHub login, one Slack user: whoever had it before loses it.
    await session.execute(
        sa.update(IdentityLink)
        .where(
            sa.func.lower(IdentityLink.github_login) == github_login.lower(),
            IdentityLink.slack_user != row.slack_user,
        )
        .values(github_login=None, confirmed_at=None, updated_at=now)
    )
    row.github_login = github_login  # as GitHub spells it, not as it was typed in Slack
    row.confirmed_at = now
    _clear_pending(row, now)
    await session.flush()
    return LinkResult(LinkOutcome.CONFIRMED, slack_user=row.slack_user, login=github_login)


def _clear_pending(row: IdentityLink, now: datetime) -> None:
    row.pending_login = None
    row.code_hash = None
    row.code_expires_at = None
    row.updated_at = now


async def linked_login(session: AsyncSession, *, slack_user: str) -> str | None:
    """The GitHub login this Slack user confirmed, if any (a pending one does not count)."""
    result = await session.execute(
        sa.select(IdentityLink.github_login).where(IdentityLink.slack_user == slack_user)
    )
    return result.scalar_one_or_none()


async def unlink(session: AsyncSession, *, slack_user: str) -> bool:
    """Forget this Slack user's link and any pending code; False when there was none."""
    result = await session.execute(
        sa.delete(IdentityLink).where(IdentityLink.slack_user == slack_user)
    )
    return bool(result.rowcount)
