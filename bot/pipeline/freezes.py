"""Repository-wide deploy freezes (pure): when one ends, whether it holds, what to say.

A freeze stops every deploy of a repository, to every environment, until its end time;
`--force` (repository admins) goes past it and the thread says so. Rollbacks are never held
by a freeze. A freeze that has ended holds nothing, so nobody has to remember to lift it.

Times are read and shown in UTC. The pipeline file may name a different timezone per
environment (`window.timezone`), but a freeze covers the whole repository, so no single
environment's timezone is the right one to read `18:00` in; UTC is the same for everyone
and is what every announcement and refusal shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from bot.pipeline.models import Person

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
_UNITS["w"] = timedelta(weeks=1)
_RELATIVE = re.compile(r"^\+(\d{1,4})([mhdw])$")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATE_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{1,2}):(\d{2})$")
FORMS = "`friday`, `18:00`, `2026-12-01`, `2026-12-01T18:00` or `+2h` (UTC)"


@dataclass(frozen=True)
class Freeze:
    """A repository's freeze: who set it, why, and until when."""

    repository: str
    by: Person
    reason: str
    until: datetime
    since: datetime

    def holds_at(self, now: datetime) -> bool:
        return now < self.until


@dataclass(frozen=True)
class Until:
    """A parsed end time, or why the text is not one."""

    at: datetime | None = None
    error: str | None = None


def when(moment: datetime) -> str:
    """`2026-12-01 18:00 UTC`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def parse_until(text: str, *, now: datetime) -> Until:
    """The moment `text` names, after `now` (UTC):

    - `friday` (any day name or its first three letters): 00:00 at the start of the next
      such day, a week ahead when it is that day already;
    - `18:00`: the next time the clock shows it (today, or tomorrow once it has passed);
    - `2026-12-01`: 00:00 at the start of that day; `2026-12-01T18:00`: that moment;
    - `+90m`, `+2h`, `+3d`, `+1w`: that long from now.

    A time that is not after `now`, or text none of these read, is an error saying so.
    """
    now = now.astimezone(UTC)
    word = text.strip().lower()
    at: datetime | None
    try:
        at = _read(word, now)
    except ValueError:
        at = None
    if at is None:
        return Until(error=f"`{text}` is not a time deploybot reads: use {FORMS}.")
    if at <= now:
        return Until(error=f"`{text}` ({when(at)}) is already past; a freeze needs a time to come.")
    return Until(at=at)


def _read(word: str, now: datetime) -> datetime | None:
    if match := _RELATIVE.match(word):
        count, unit = int(match.group(1)), match.group(2)
        return now + count * _UNITS[unit] if count > 0 else None
    day = next((i for i, name in enumerate(_DAYS) if word in (name, name[:3])), None)
    if day is not None:
        ahead = (day - now.weekday() - 1) % 7 + 1
        return datetime.combine(now.date() + timedelta(days=ahead), time(), UTC)
    if match := _CLOCK.match(word):
        clock = time(int(match.group(1)), int(match.group(2)))
        at = datetime.combine(now.date(), clock, UTC)
        return at if at > now else at + timedelta(days=1)
    if match := _DATE.match(word):
        year, month, day_of = (int(g) for g in match.groups())
        return datetime(year, month, day_of, tzinfo=UTC)
    if match := _DATE_TIME.match(word):
        year, month, day_of, hour, minute = (int(g) for g in match.groups())
        return datetime(year, month, day_of, hour, minute, tzinfo=UTC)
    return None


def describe(freeze: Freeze) -> str:
    """`frozen until 2026-12-01 18:00 UTC by bob: release week`."""
    return f"frozen until {when(freeze.until)} by {freeze.by.label}: {freeze.reason}"


def refusal(freeze: Freeze) -> str:
    """Why a deploy is refused while `freeze` holds."""
    return f"`{freeze.repository}` is {describe(freeze)}. Ask an admin to `--force`, or wait."


def overridden(freeze: Freeze, person: Person) -> str:
    """What the thread says when `person` deploys past the freeze with `--force`."""
    return f"⚠️ {person.label} used `--force` past the freeze: `{freeze.repository}` is " + (
        describe(freeze) + "."
    )


def announce(freeze: Freeze, *, replaced: Freeze | None = None) -> str:
    """What the channel is told when `freeze` is set (`replaced`: the one it ends early)."""
    instead = f" (instead of until {when(replaced.until)})" if replaced is not None else ""
    return (
        f"🧊 {freeze.by.label} froze `{freeze.repository}` until {when(freeze.until)}"
        f"{instead}: {freeze.reason}. Deploys are refused until then unless an admin uses "
        f"`--force`; rollbacks still go."
    )


def announce_lifted(freeze: Freeze | None, person: Person, repository: str) -> str | None:
    """What the channel is told when `person` lifts the freeze; None: nothing was frozen."""
    if freeze is None:
        return None
    return (
        f"☀️ {person.label} lifted the freeze on `{repository}` (set by {freeze.by.label} "
        f"until {when(freeze.until)}). Deploys may go again."
    )
