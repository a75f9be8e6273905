"""The pipeline file (`.github/deploybot.yml`, CONTRACT §4): schema, parsing, defaults. Pure.

`parse_pipeline(text)` turns the file's text into a frozen `Pipeline`, or raises
`PipelineError` listing every problem with its line and a dotted field path
(`line 7: environments[1].approvals: must be ≥ 0`). Callers do the I/O; nothing here reads
files, the clock or the network.

Rules where the contract is silent:

- Unknown keys are errors, with the known keys (and the nearest one) in the message. A key
  given twice in one mapping is an error too (YAML would silently keep the last one).
- Only plain YAML is accepted (the `yaml.safe_load` subset: no `!!python/...` tags). Files over
  256 KiB, with over 20,000 values, nested over 64 levels deep, or with over 100,000 values once
  aliases are expanded are refused: a real pipeline file is a few KiB, and PyYAML is slow enough
  that a hostile file could otherwise hold a worker for minutes.
- An empty file (or one with only comments) and a file without `environments` get the default
  environments `dev` → `stage` → `production` (see `DEFAULT_PIPELINE`); `environments: []` is
  an error. So a repository may set only `slack` and `users`.
- Environment names match `[a-z0-9][a-z0-9._-]*` ignoring case, at most 255 characters (a
  GitHub environment name). They are kept as written, because the name becomes the GitHub
  Deployment's `environment`, and compared ignoring case (GitHub does too), so `Prod` and
  `prod` may not both appear. `help`, `status`, `pause` and `resume` are refused: `/deploy
  <env>` could not tell them from those commands.
- `approvers` entries are classified once, here: `@org/team` is a `GitHubTeam`; an entry that
  is `U` or `W` followed by upper-case letters and digits (`U0CAROL`) is a `SlackUser`; anything
  else is a `GitHubUser` (a leading `@` is allowed). GitHub logins are case-insensitive, so a
  login that looks like a Slack id is written in lower case. Logins and teams are stored in lower
  case. A missing or empty `approvers` means the repository's admins: it becomes
  `(RepoAdmins(),)`, so `Environment.approvers` is never empty and callers need no hidden rule.
  An entry listed twice is an error, and so is `approvals` larger than the number of people
  listed (a login and the Slack id `users:` maps it to are one person) when only people, no
  team and no admins, are listed: such an environment could never be approved.
- `health` needs `url` or at least one `prometheus` query. `interval`, `soak` and
  `canary.pause` must be longer than zero.
- Durations: `"500ms"`, `"30s"`, `"5m"`, `"1h"`, combinations in that order (`"1h30m"`), or a
  number of seconds (int or float), rounded to the microsecond.
- `window`: `timezone` is required (an IANA name); `days` defaults to every day and `hours` to
  the whole day. `days` is a string like `mon-fri`, `mon,wed,fri`, `fri-mon` (ranges may wrap)
  or a list of such; full day names work too. `hours` is `HH:MM-HH:MM`, end exclusive; an end
  before the start runs past midnight (belonging to the day it starts); `24:00` ends at midnight.
- `canary`: `pause` defaults to 5m. A step with `manual: true` holds at that weight until someone
  promotes it instead of moving on after `pause`.
- `slack.channel` must be a channel id (`C…`/`G…`), not a `#name`; `users` maps GitHub logins
  (case-insensitive) to Slack user ids (`U…`/`W…`).
"""

from __future__ import annotations

import difflib
import functools
import re
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, NamedTuple, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "DEFAULT_ENVIRONMENTS",
    "DEFAULT_PIPELINE",
    "Approver",
    "Canary",
    "CanaryStep",
    "Checks",
    "Environment",
    "GitHubTeam",
    "GitHubUser",
    "Health",
    "Hours",
    "Pipeline",
    "PipelineError",
    "Problem",
    "PrometheusQuery",
    "RepoAdmins",
    "Slack",
    "SlackUser",
    "Window",
    "format_duration",
    "parse_approver",
    "parse_duration",
    "parse_pipeline",
]

MAX_FILE_CHARS = 256 * 1024
MAX_NODES = 20_000
MAX_VALUES = 100_000
MAX_DEPTH = 64
RESERVED_ENVIRONMENT_NAMES = frozenset({"help", "status", "pause", "resume"})

# --- problems ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a pipeline file: 1-based `line` (None if unknown), dotted `field`."""

    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class PipelineError(ValueError):
    """The pipeline file is invalid; `.problems` lists every problem found, in line order."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = sorted(
            problems, key=lambda p: (p.line is not None, p.line or 0)
        )
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


class _FieldErrors(ValueError):
    """Raised by cross-field validators to name the exact sub-fields that are wrong."""

    def __init__(self, errors: Sequence[tuple[tuple[str | int, ...], str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{_dotted(loc)}: {message}" for loc, message in errors))


# --- durations ---------------------------------------------------------------------------

_UNITS = {"h": 3_600_000_000, "m": 60_000_000, "s": 1_000_000, "ms": 1_000}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)\s*")


def parse_duration(value: object) -> timedelta:
    """`"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"1h30m"`, or a number of seconds → timedelta.

    Rounded to the microsecond. Raises ValueError, also for negative values. A timedelta is
    returned unchanged (if not negative).
    """
    if isinstance(value, timedelta):
        duration = value
    else:
        try:
            duration = timedelta(microseconds=int(_micros(value)))
        except OverflowError:
            raise ValueError("is too long") from None
    if duration < timedelta(0):
        raise ValueError("must not be negative")
    return duration


_DURATION_HELP = 'must be a duration like "500ms", "30s", "5m", "1h" or a number of seconds'
_BARE_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _micros(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(_DURATION_HELP)
    text = str(value).strip()
    if isinstance(value, str) and not _BARE_NUMBER.fullmatch(text):
        micros = _micros_of_text(text)
    else:
        try:
            micros = Decimal(text) * _UNITS["s"]
        except InvalidOperation:
            raise ValueError(_DURATION_HELP) from None
        if not micros.is_finite():
            raise ValueError(_DURATION_HELP)
    return micros.to_integral_value(rounding=ROUND_HALF_EVEN)


def _micros_of_text(text: str) -> Decimal:
    position, total, seen = 0, Decimal(0), []
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            raise ValueError(_DURATION_HELP)
        number, unit = match.groups()
        # Units must come largest first and once each, so "5m30s" is fine and "30s5m" is a typo.
        if seen and list(_UNITS).index(unit) <= list(_UNITS).index(seen[-1]):
            raise ValueError(_DURATION_HELP)
        seen.append(unit)
        total += Decimal(number) * _UNITS[unit]
        position = match.end()
    if not seen:
        raise ValueError(_DURATION_HELP)
    return total


def format_duration(value: timedelta) -> str:
    """How the file spells `value` (`1h30m`, `500ms`, `1.5s`); `parse_duration` reads it back."""
    micros = value // timedelta(microseconds=1)
    if micros < 0:
        raise ValueError("negative durations have no spelling")
    if micros == 0:
        return "0s"
    hours, rest = divmod(micros, _UNITS["h"])
    minutes, rest = divmod(rest, _UNITS["m"])
    parts = [f"{hours}h"] if hours else []
    parts += [f"{minutes}m"] if minutes else []
    if rest and rest < _UNITS["s"] and rest % _UNITS["ms"] == 0:
        parts.append(f"{rest // _UNITS['ms']}ms")
    elif rest:
        seconds = Decimal(rest) / _UNITS["s"]
        parts.append(f"{seconds.normalize():f}s")
    return "".join(parts)


def _positive_duration(value: object) -> timedelta:
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise ValueError("must be longer than zero")
    return duration


PositiveDuration = Annotated[
    timedelta, PlainValidator(_positive_duration), PlainSerializer(format_duration)
]

# --- people ------------------------------------------------------------------------------

_LOGIN = r"[A-Za-z0-9][A-Za-z0-9-]{0,38}"
_GITHUB_LOGIN = re.compile(_LOGIN)
_GITHUB_TEAM = re.compile(rf"@({_LOGIN})/([A-Za-z0-9][A-Za-z0-9_.-]*)")
_SLACK_USER = re.compile(r"[UW][A-Z0-9]+")
_SLACK_CHANNEL = re.compile(r"[CG][A-Z0-9]+")


@dataclass(frozen=True, slots=True)
class GitHubUser:
    """An approver named by GitHub login (stored in lower case)."""

    login: str

    def __str__(self) -> str:
        return self.login


@dataclass(frozen=True, slots=True)
class SlackUser:
    """An approver named by Slack user id (`U…` or `W…`)."""

    user_id: str

    def __str__(self) -> str:
        return self.user_id


@dataclass(frozen=True, slots=True)
class GitHubTeam:
    """An approver group: any member of the GitHub team `@org/slug` (stored in lower case)."""

    org: str
    slug: str

    def __str__(self) -> str:
        return f"@{self.org}/{self.slug}"


@dataclass(frozen=True, slots=True)
class RepoAdmins:
    """An approver group: the repository's admins. Stands for a missing or empty `approvers`."""

    def __str__(self) -> str:
        return "repository admins"


Approver = GitHubUser | SlackUser | GitHubTeam | RepoAdmins


def parse_approver(value: object) -> Approver:
    """Classify one `approvers` entry: `@org/team`, a Slack user id, or a GitHub login."""
    if isinstance(value, GitHubUser | SlackUser | GitHubTeam | RepoAdmins):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a GitHub login, a Slack user id or @org/team, as a string")
    text = value.strip()
    if team := _GITHUB_TEAM.fullmatch(text):
        return GitHubTeam(org=team[1].lower(), slug=team[2].lower())
    if _SLACK_USER.fullmatch(text):
        return SlackUser(user_id=text)
    login = text.removeprefix("@")
    if _GITHUB_LOGIN.fullmatch(login):
        return GitHubUser(login=login.lower())
    if "/" in text:
        raise ValueError(f"`{text}` is not a team: write a GitHub team as @org/team-slug")
    raise ValueError(
        f"`{text}` is not a GitHub login, a Slack user id (U…/W…) or a GitHub team (@org/team)"
    )


def _github_login(value: str) -> str:
    if not _GITHUB_LOGIN.fullmatch(value):
        raise ValueError(f"`{value}` is not a GitHub login")
    return value.lower()


def _slack_user_id(value: str) -> str:
    if not _SLACK_USER.fullmatch(value):
        raise ValueError(
            f"`{value}` is not a Slack user id: use the member id, like U0123ABCD "
            "(profile → ⋮ → Copy member ID)"
        )
    return value


def _slack_channel_id(value: str) -> str:
    if not _SLACK_CHANNEL.fullmatch(value):
        raise ValueError(
            f"`{value}` is not a Slack channel id: use the id, like C0123456789 "
            "(channel details → About), not the channel's name"
        )
    return value


# --- windows -----------------------------------------------------------------------------

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
ALL_DAYS = frozenset(range(7))


def _day(text: str) -> int:
    word = text.strip().lower()
    for names in (_DAYS, _FULL_DAYS):
        if word in names:
            return names.index(word)
    raise ValueError(f"`{text.strip()}` is not a day: use {', '.join(_DAYS)}")


def _parse_days(value: object) -> frozenset[int]:
    if isinstance(value, frozenset | set) and value <= ALL_DAYS:
        return frozenset(value)
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        items = [part for v in value for part in v.split(",")]
    else:
        raise ValueError('must be days like "mon-fri" or "mon,wed,fri"')
    days: set[int] = set()
    for item in items:
        first, dash, last = item.partition("-")
        if not dash:
            days.add(_day(first))
            continue
        start, end = _day(first), _day(last)
        days.update((start + i) % 7 for i in range((end - start) % 7 + 1))
    if not days:
        raise ValueError("must name at least one day")
    return frozenset(days)


def _format_days(days: frozenset[int]) -> str:
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(
        _DAYS[run[0]] if len(run) == 1 else f"{_DAYS[run[0]]}-{_DAYS[run[-1]]}" for run in runs
    )


class Hours(NamedTuple):
    """A daily span, end exclusive; `end <= start` runs past midnight (00:00 = midnight)."""

    start: time
    end: time

    def __str__(self) -> str:
        end = "24:00" if self.end == time(0) else self.end.strftime("%H:%M")
        return f"{self.start.strftime('%H:%M')}-{end}"


ALL_DAY = Hours(time(0), time(0))
_CLOCK = re.compile(r"\s*(\d{1,2}):(\d{2})\s*")


def _clock(text: str) -> tuple[int, int]:
    match = _CLOCK.fullmatch(text)
    if match is None:
        raise ValueError(_HOURS_HELP)
    return int(match[1]), int(match[2])


_HOURS_HELP = 'must be hours like "09:00-16:00"'


def _parse_hours(value: object) -> Hours:
    if isinstance(value, Hours):
        return value
    if not isinstance(value, str) or value.count("-") != 1:
        raise ValueError(_HOURS_HELP)
    first, last = value.split("-")
    (start_h, start_m), (end_h, end_m) = _clock(first), _clock(last)
    if start_h > 23 or start_m > 59 or end_m > 59 or end_h > 24 or (end_h == 24 and end_m):
        raise ValueError(f"{_HOURS_HELP}, with times from 00:00 to 24:00")
    if (start_h, start_m) == (end_h, end_m):
        raise ValueError("start and end are the same: use 00:00-24:00 for the whole day")
    return Hours(time(start_h, start_m), time(end_h % 24, end_m))


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"`{value}` is not a known time zone: use an IANA name like Europe/Stockholm or UTC"
        ) from None
    return value


# --- environment names -------------------------------------------------------------------

_ENVIRONMENT_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,254}", re.IGNORECASE)


def _environment_name(value: str) -> str:
    if not _ENVIRONMENT_NAME.fullmatch(value):
        raise ValueError(
            f"`{value}` is not a valid environment name: use letters, digits, `.`, `_` and `-`, "
            "starting with a letter or digit, at most 255 characters"
        )
    if value.lower() in RESERVED_ENVIRONMENT_NAMES:
        raise ValueError(f"`{value}` is reserved for a `/deploy {value.lower()}` command")
    return value


def _http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        ok = parts.scheme in {"http", "https"} and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok or any(c.isspace() for c in value):
        raise ValueError(f"`{value}` is not an http:// or https:// URL")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
NonEmptyStr = Annotated[str, Field(min_length=1)]

# --- the models --------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Slack(_Model):
    """Where the repository's threads go."""

    channel: Annotated[str, AfterValidator(_slack_channel_id)]


class PrometheusQuery(_Model):
    """A Prometheus query whose value must stay at or below `max`, or at or above `min`."""

    url: HttpUrl
    query: NonEmptyStr
    max: Annotated[StrictFloat | None, Field(allow_inf_nan=False)] = None
    min: Annotated[StrictFloat | None, Field(allow_inf_nan=False)] = None

    @model_validator(mode="after")
    def _one_bound(self) -> PrometheusQuery:
        if (self.max is None) == (self.min is None):
            raise ValueError("give exactly one of `max` or `min`")
        return self


class Health(_Model):
    """How a deployment is verified: probes every `interval`, healthy for `soak`."""

    url: HttpUrl | None = None
    prometheus: tuple[PrometheusQuery, ...] = ()
    interval: PositiveDuration = timedelta(seconds=30)
    soak: PositiveDuration = timedelta(minutes=5)
    failures: StrictInt = Field(3, ge=1)

    @model_validator(mode="after")
    def _something_to_probe(self) -> Health:
        if self.url is None and not self.prometheus:
            raise ValueError("needs `url` or at least one `prometheus` query")
        return self


class Window(_Model):
    """When deploys may start: on `days` (0 = Monday), within `hours`, in `timezone`."""

    days: Annotated[frozenset[int], PlainValidator(_parse_days), PlainSerializer(_format_days)] = (
        ALL_DAYS
    )
    hours: Annotated[Hours, PlainValidator(_parse_hours), PlainSerializer(str)] = ALL_DAY
    timezone: Annotated[str, AfterValidator(_timezone)]

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The time zone, ready for `datetime.astimezone`."""
        return zoneinfo.ZoneInfo(self.timezone)

    def is_open(self, at: datetime) -> bool:
        """True when `at` (an aware datetime) falls inside the window."""
        if at.tzinfo is None:
            raise ValueError("is_open needs an aware datetime")
        local = at.astimezone(self.zone)
        now, day = local.time(), local.weekday()
        start, end = self.hours
        if start < end:
            return day in self.days and start <= now < end
        return (day in self.days and now >= start) or ((day - 1) % 7 in self.days and now < end)

    def next_open(self, at: datetime) -> datetime | None:
        """When the window next opens after `at` (in its time zone), within a week."""
        local = at.astimezone(self.zone)
        for offset in range(8):
            day = local.date() + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opening = self._real(datetime.combine(day, self.hours.start, tzinfo=self.zone))
            if opening > local and self.is_open(opening):
                return opening
        return None

    def _real(self, local: datetime) -> datetime:
        """`local` if that wall time exists; inside a spring-forward gap, the gap's end
        (when the window really opens that day)."""
        if local.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) == local.replace(
            tzinfo=None
        ):
            return local
        moment = local.replace(fold=1).astimezone(UTC)
        for _ in range(24 * 60):
            if moment.astimezone(self.zone).time() >= self.hours.start:
                break
            moment += timedelta(minutes=1)
        return moment.astimezone(self.zone)


class CanaryStep(_Model):
    """One canary weight in percent; `manual` holds there until someone promotes."""

    weight: StrictInt = Field(ge=1, le=100)
    manual: bool = False


def _canary_step(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return {"weight": value}
    if isinstance(value, dict | CanaryStep):
        return value
    raise ValueError("must be a weight from 1 to 100, or {weight: 50, manual: true}")


class Canary(_Model):
    """Gradual rollout: weights strictly increasing to 100, `pause` between steps."""

    steps: tuple[Annotated[CanaryStep, BeforeValidator(_canary_step)], ...]
    pause: PositiveDuration = timedelta(minutes=5)

    @model_validator(mode="after")
    def _increasing_to_100(self) -> Canary:
        if not self.steps:
            raise _FieldErrors([(("steps",), "must list at least one step, the last being 100")])
        errors: list[tuple[tuple[str | int, ...], str]] = []
        for index in range(1, len(self.steps)):
            if self.steps[index].weight <= self.steps[index - 1].weight:
                errors.append(
                    (
                        ("steps", index),
                        f"weights must increase: {self.steps[index].weight} comes after "
                        f"{self.steps[index - 1].weight}",
                    )
                )
        if self.steps[-1].weight != 100:
            errors.append((("steps", len(self.steps) - 1), "the last step must be 100"))
        if errors:
            raise _FieldErrors(errors)
        return self


class Checks(StrEnum):
    """Whether the commit's statuses and check runs must be green before a deploy."""

    REQUIRED = "required"
    IGNORE = "ignore"


def _approvers(value: object) -> object:
    if value is None or (isinstance(value, list | tuple) and not value):
        return (RepoAdmins(),)
    return value


class Environment(_Model):
    """One stage of the pipeline, as configured (see the module docstring for the rules)."""

    name: Annotated[str, AfterValidator(_environment_name)]
    auto: bool = False
    health: Health | None = None
    approvals: StrictInt = Field(0, ge=0)
    approvers: Annotated[
        tuple[Annotated[Approver, PlainValidator(parse_approver), PlainSerializer(str)], ...],
        BeforeValidator(_approvers),
    ] = (RepoAdmins(),)
    window: Window | None = None
    canary: Canary | None = None
    checks: Checks = Checks.REQUIRED
    auto_rollback: bool = True

    @model_validator(mode="after")
    def _approvers_can_approve(self) -> Environment:
        errors: list[tuple[tuple[str | int, ...], str]] = []
        seen: set[Approver] = set()
        for index, approver in enumerate(self.approvers):
            if approver in seen:
                errors.append((("approvers", index), f"`{approver}` is listed twice"))
            seen.add(approver)
        only_people = all(isinstance(a, GitHubUser | SlackUser) for a in seen)
        if only_people and self.approvals > len(seen):
            errors.append(
                (
                    ("approvals",),
                    f"needs {self.approvals} distinct approvers but `approvers` lists "
                    f"only {len(seen)}",
                )
            )
        if errors:
            raise _FieldErrors(errors)
        return self

    def summary(self) -> str:
        """A few words for humans: `production (1 approval, window, canary)`."""
        notes = ["auto"] if self.auto else []
        if self.approvals:
            notes.append(f"{self.approvals} approval{'s' if self.approvals > 1 else ''}")
        notes += [key for key in ("health", "window", "canary") if getattr(self, key)]
        if self.checks is Checks.IGNORE:
            notes.append("checks ignored")
        if not self.auto_rollback:
            notes.append("no auto-rollback")
        return f"{self.name} ({', '.join(notes)})" if notes else self.name


DEFAULT_ENVIRONMENTS: tuple[Environment, ...] = (
    Environment(name="dev"),
    Environment(name="stage"),
    Environment(name="production", approvals=1),
)


def _users(value: object) -> object:
    if value is None:
        return {}
    if isinstance(value, dict):
        first: dict[str, str] = {}
        errors = []
        for key in value:
            if isinstance(key, str) and first.setdefault(key.lower(), key) != key:
                errors.append(((key,), f"`{first[key.lower()]}` is already listed"))
        if errors:
            raise _FieldErrors(errors)
    return value


def _distinct_people(approvers: Iterable[Approver], users: dict[str, str]) -> int | None:
    """How many people `approvers` names, through `users:`; None when a group is listed."""
    people = set()
    for approver in approvers:
        if isinstance(approver, GitHubUser):
            people.add(users.get(approver.login, approver.login))
        elif isinstance(approver, SlackUser):
            people.add(approver.user_id)
        else:
            return None
    return len(people)


class Pipeline(_Model):
    """A repository's pipeline: environments in promotion order, people, the Slack channel."""

    slack: Slack | None = None
    users: Annotated[
        dict[
            Annotated[str, AfterValidator(_github_login)],
            Annotated[str, AfterValidator(_slack_user_id)],
        ],
        BeforeValidator(_users),
    ] = Field(default_factory=dict)
    environments: tuple[Environment, ...] = DEFAULT_ENVIRONMENTS

    # Not `min_length`: pydantic would also report it when every listed environment is invalid.
    @field_validator("environments", mode="after")
    @classmethod
    def _unique_names_and_enough_people(
        cls, environments: tuple[Environment, ...], info: ValidationInfo
    ) -> tuple[Environment, ...]:
        if not environments:
            raise ValueError("must list at least one environment")
        users: dict[str, str] = info.data.get("users") or {}
        errors = []
        first: dict[str, int] = {}
        for index, environment in enumerate(environments):
            earlier = first.setdefault(environment.name.lower(), index)
            if earlier != index:
                message = f"`{environments[earlier].name}` is already defined"
                errors.append(((index, "name"), message))
            people = _distinct_people(environment.approvers, users)
            if people is not None and environment.approvals > people:
                message = (
                    f"needs {environment.approvals} distinct approvers but `approvers` names "
                    f"only {people} (`users:` maps some of them to the same Slack user)"
                )
                errors.append(((index, "approvals"), message))
        if errors:
            raise _FieldErrors(errors)
        return environments

    def environment(self, name: str) -> Environment | None:
        """The environment called `name` (ignoring case), or None."""
        wanted = name.lower()
        return next((e for e in self.environments if e.name.lower() == wanted), None)

    def _index(self, name: str) -> int:
        environment = self.environment(name)
        if environment is None:
            raise KeyError(name)
        return self.environments.index(environment)

    def previous(self, name: str) -> Environment | None:
        """The environment before `name` in promotion order; None for the first.

        Raises KeyError for an unknown name, so it is never mistaken for the first.
        """
        index = self._index(name)
        return self.environments[index - 1] if index > 0 else None

    def next(self, name: str) -> Environment | None:
        """The environment after `name` in promotion order; None for the last.

        Raises KeyError for an unknown name.
        """
        index = self._index(name)
        return self.environments[index + 1] if index + 1 < len(self.environments) else None

    def slack_user_for(self, github_login: str) -> str | None:
        """The Slack user id `users:` maps this GitHub login to (ignoring case), or None."""
        return self.users.get(github_login.lower())

    def summary(self) -> str:
        """One line for humans: `3 environments: dev → stage → production (1 approval)`."""
        count = len(self.environments)
        chain = " → ".join(e.summary() for e in self.environments)
        return f"{count} environment{'s' if count > 1 else ''}: {chain}"

    def to_data(self) -> dict[str, Any]:
        """The pipeline as file data: `parse_pipeline(yaml.safe_dump(p.to_data())) == p`."""
        data: dict[str, Any] = {}
        if self.slack is not None:
            data["slack"] = {"channel": self.slack.channel}
        if self.users:
            data["users"] = dict(self.users)
        data["environments"] = [_environment_data(e) for e in self.environments]
        return data


def _environment_data(environment: Environment) -> dict[str, Any]:
    data: dict[str, Any] = {"name": environment.name, "auto": environment.auto}
    if (health := environment.health) is not None:
        data["health"] = {
            **({"url": health.url} if health.url is not None else {}),
            "prometheus": [
                {
                    "url": q.url,
                    "query": q.query,
                    **({"max": q.max} if q.max is not None else {"min": q.min}),
                }
                for q in health.prometheus
            ],
            "interval": format_duration(health.interval),
            "soak": format_duration(health.soak),
            "failures": health.failures,
        }
    data["approvals"] = environment.approvals
    if environment.approvers != (RepoAdmins(),):
        data["approvers"] = [str(a) for a in environment.approvers]
    if (window := environment.window) is not None:
        data["window"] = {
            "days": _format_days(window.days),
            "hours": str(window.hours),
            "timezone": window.timezone,
        }
    if (canary := environment.canary) is not None:
        data["canary"] = {
            "steps": [
                {"weight": s.weight, "manual": True} if s.manual else s.weight for s in canary.steps
            ],
            "pause": format_duration(canary.pause),
        }
    data["checks"] = environment.checks.value
    data["auto_rollback"] = environment.auto_rollback
    return data


DEFAULT_PIPELINE = Pipeline()
"""A repository without a pipeline file: `dev` → `stage` → `production`, where production needs
one approval from a repository admin (`approvers == (RepoAdmins(),)`)."""

# --- parsing -----------------------------------------------------------------------------


def parse_pipeline(text: str) -> Pipeline:
    """Parse and validate the pipeline file's text.

    Raises PipelineError with every problem found: YAML syntax (one problem, with its line),
    unknown or repeated keys, wrong types and broken rules, each with line and field path.

    Files parsed lately are remembered (`PARSED_FILES` of them, up to `MAX_REMEMBERED_CHARS`
    each): every command, click, webhook and probe reads its release's file, thousands of
    rollouts share far fewer files, and parsing one costs a millisecond or more. A Pipeline
    is frozen, so one may serve every caller; a broken file raises a new PipelineError each
    time.
    """
    if len(text) > MAX_REMEMBERED_CHARS:
        return _pipeline_or_raise(_parse(text))
    return _pipeline_or_raise(_remembered(text))


# More than the files one scheduler tick needs (two rollouts a repository at 10,000
# rollouts is 5,000 files): fewer would have every tick parse them all again.
PARSED_FILES = 20_000
# A real pipeline file is a few KiB; bigger ones are parsed each time, so the cache holds at
# most PARSED_FILES * MAX_REMEMBERED_CHARS characters of keys.
MAX_REMEMBERED_CHARS = 16 * 1024


def _pipeline_or_raise(parsed: Pipeline | tuple[Problem, ...]) -> Pipeline:
    if isinstance(parsed, Pipeline):
        return parsed
    raise PipelineError(parsed)


def _parse(text: str) -> Pipeline | tuple[Problem, ...]:
    """The pipeline, or its problems (immutable, so they may be remembered)."""
    if len(text) > MAX_FILE_CHARS:
        return (Problem(None, "", "the file is larger than 256 KiB"),)
    try:
        data, root = _load(text)
        try:
            return Pipeline.model_validate({} if data is None else data)
        except ValidationError as exc:
            return tuple(_problems(exc, root))
    except PipelineError as error:
        return tuple(error.problems)


_remembered = functools.lru_cache(maxsize=PARSED_FILES)(_parse)


def _load(text: str) -> tuple[Any, yaml.Node | None]:
    loader = None
    try:
        loader = _Loader(text)
        root = loader.get_single_node()
        if root is None:
            return None, None
        _check_tree(root)
        return loader.construct_document(root), root
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        detail = ": ".join(str(part) for part in (exc.context, exc.problem) if part)
        line = mark.line + 1 if mark is not None else None
        raise PipelineError([Problem(line, "", f"invalid YAML: {detail}")]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        message = f"invalid YAML: character {exc.character:#x} is not allowed"
        raise PipelineError([Problem(line, "", message)]) from None
    except yaml.YAMLError as exc:
        raise PipelineError([Problem(None, "", f"invalid YAML: {exc}")]) from None
    finally:
        if loader is not None:
            loader.dispose()


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that stops early on deep nesting and on too many values.

    PyYAML's composer recurses once per level and its scanner slows down with the flow nesting
    depth (`[[[[...`), so both are bounded while parsing rather than afterwards.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise yaml.scanner.ScannerError(None, None, _TOO_DEEP, self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, _TOO_DEEP, self.peek_event().start_mark)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            message = f"more than {MAX_NODES} values"
            raise yaml.composer.ComposerError(None, None, message, self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _check_tree(root: yaml.Node) -> None:
    """Refuse repeated keys, recursive aliases and alias bombs before anything is built."""
    problems: list[Problem] = []
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    # An explicit stack: deep YAML must not exhaust Python's recursion limit here.
    stack: list[tuple[yaml.Node, bool, tuple[str | int, ...]]] = [(root, False, ())]
    while stack:
        node, children_done, loc = stack.pop()
        children = _children(node)
        if children_done:
            visiting.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for _, child in children)
            if sizes[id(node)] > MAX_VALUES:
                raise PipelineError([Problem(None, "", "too many values once aliases expand")])
            continue
        if id(node) in sizes:
            continue
        if id(node) in visiting:
            line = node.start_mark.line + 1
            raise PipelineError([Problem(line, "", "invalid YAML: an alias refers to itself")])
        visiting.add(id(node))
        stack.append((node, True, loc))
        if isinstance(node, yaml.MappingNode):
            problems += _repeated_keys(node, loc)
        stack.extend(
            (child, False, (*loc, part)) for part, child in children if id(child) not in sizes
        )
    if problems:
        raise PipelineError(problems)


def _children(node: yaml.Node) -> list[tuple[str | int, yaml.Node]]:
    """Child nodes, each with its path part: a mapping's key nodes and values, a list's items."""
    if isinstance(node, yaml.MappingNode):
        return [
            (str(key.value) if isinstance(key, yaml.ScalarNode) else "?", part)
            for key, value in node.value
            for part in (key, value)
        ]
    if isinstance(node, yaml.SequenceNode):
        return list(enumerate(node.value))
    return []


def _repeated_keys(node: yaml.MappingNode, loc: tuple[str | int, ...]) -> list[Problem]:
    problems = []
    seen: set[str] = set()
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
            continue
        if key.value in seen:
            message = f"`{key.value}` is given twice; YAML would silently keep the last"
            problems.append(Problem(key.start_mark.line + 1, _dotted((*loc, key.value)), message))
        seen.add(key.value)
    return problems


def _problems(exc: ValidationError, root: yaml.Node | None) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(part for part in error["loc"] if part != "[key]")
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, _FieldErrors):
            for sub_loc, message in cause.errors:
                full = loc + sub_loc
                problems.append(Problem(_line(root, full), _dotted(full), message))
            continue
        problems.append(Problem(_line(root, loc), _dotted(loc), _message(error, loc)))
    return problems


def _line(root: yaml.Node | None, loc: tuple[str | int, ...]) -> int | None:
    """The line of the YAML node at `loc`, or of its nearest ancestor that exists."""
    if root is None:
        return None
    node, line = root, root.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            # The last match wins, like the mapping the constructor built (merge keys come first).
            match = next(
                ((k, v) for k, v in reversed(node.value) if k.value == str(part)),
                None,
            )
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _dotted(loc: Sequence[str | int]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


_SIMPLE_MESSAGES = {
    "missing": "is required",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_parsing": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a mapping (key: value)",
    "model_type": "must be a mapping (key: value)",
    "model_attributes_type": "must be a mapping (key: value)",
}


def _message(error: Any, loc: tuple[str | int, ...]) -> str:
    kind, ctx, given = error["type"], error.get("ctx", {}), error["input"]
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    if kind == "model_type" and not loc:
        return "the file must be a mapping with keys like `environments:`"
    if kind == "model_type" and len(loc) == 2 and loc[0] == "environments":
        if isinstance(given, str):
            return f"must be a mapping: write `- name: {given}`"
    if given is None and kind != "missing":
        return "has no value"
    if kind == "string_type":
        return "must be a string" + (
            "; put it in quotes" if isinstance(error["input"], bool | int | float) else ""
        )
    if kind == "too_short":
        return f"must have at least {ctx['min_length']} item(s)"
    if kind == "enum":
        return f"must be one of: {ctx['expected']}"
    bounds = {
        "greater_than_equal": ("≥", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("≤", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        sign, key = bounds[kind]
        return f"must be {sign} {ctx[key]}"
    return _SIMPLE_MESSAGES.get(kind, error["msg"])


def _unknown_key(loc: tuple[str | int, ...]) -> str:
    key = str(loc[-1]) if loc else ""
    known = _known_keys(loc[:-1])
    if known is None:
        return f"unknown key `{key}`"
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    return f"unknown key `{key}`{hint}; known keys: {', '.join(known)}"


def _known_keys(loc: tuple[str | int, ...]) -> list[str] | None:
    model: type[BaseModel] | None = Pipeline
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        model = _model_in(field.annotation)
    return list(model.model_fields) if model else None


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if found := _model_in(arg):
            return found
    return None
