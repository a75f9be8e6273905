"""What people type: PR comment commands and the Slack `/deploy` command (pure, no I/O).

`parse_comment` reads the first line of a pull request comment, `parse_slash` the text Slack
sends after `/deploy`. Both return a `Command` or a `CommandError` that names what was wrong
and shows the right form; neither knows which environments, repositories or people exist.
`render_comment` and `render_slash` turn a `Command` back into the text that means it.

Choices the contract leaves open:
- PR comments are conversation, so words after a command's arguments are ignored
  (`/deploy stage please`, `/approve production LGTM`). Slack commands are typed on purpose,
  so an extra word there is an error. Flags are checked wherever they appear, in both: a
  mistyped `--dry-rnu` must never turn into a real deploy.
- Environment names are lower-cased; repositories, refs and logins keep their case
  (GitHub compares them case-insensitively, so must whoever looks them up).
- Error messages quote what people typed inside backticks; escape them for mrkdwn before
  posting (`bot.slack.blocks.escape`), as with any outside text.
"""

from __future__ import annotations

import difflib
import enum
import re
from dataclasses import dataclass, field
from typing import NamedTuple


class Verb(enum.StrEnum):
    """What a command asks for.

    Approve and reject come only from PR comments (in Slack they are buttons); subscribe,
    unsubscribe, freeze and unfreeze only from Slack. Link is both halves of one handshake:
    in Slack it names a GitHub login (`link <github-login>`), on a PR it carries the
    one-time code Slack gave, which proves the commenter is that login (`/deploy link <code>`).
    """

    DEPLOY = "deploy"
    STATUS = "status"
    ROLLBACK = "rollback"
    APPROVE = "approve"
    REJECT = "reject"
    LOCK = "lock"
    UNLOCK = "unlock"
    PAUSE = "pause"
    RESUME = "resume"
    HELP = "help"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    FREEZE = "freeze"
    UNFREEZE = "unfreeze"
    LINK = "link"


class Flag(enum.StrEnum):
    """Options of the commands that start a deployment (`/deploy`, `/rollback`)."""

    FORCE = "force"
    QUEUE = "queue"
    WAIT = "wait"
    DRY_RUN = "dry-run"

    @property
    def option(self) -> str:
        """How it is typed: `--dry-run`."""
        return f"--{self.value}"


@dataclass(frozen=True, slots=True)
class Command:
    """One well-formed command. Fields a verb does not take are None (flags: empty)."""

    verb: Verb
    environment: str | None = None
    repository: str | None = None
    ref: str | None = None
    reason: str | None = None
    until: str | None = None
    login: str | None = None
    flags: frozenset[Flag] = frozenset()
    # A one-time link code is a secret until used: kept out of reprs, so out of logs.
    code: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class CommandError:
    """A command that was meant but cannot run: what was wrong, and the right form."""

    message: str
    usage: str
    verb: Verb | None = None

    @property
    def text(self) -> str:
        """The message and the usage, ready to post (after escaping)."""
        return f"{self.message}\n{self.usage}"


SLACK_USAGE = """\
*Usage:* `/deploy <subcommand>`
• `/deploy help` — this message
• `/deploy subscribe <owner/repo>` · `/deploy unsubscribe <owner/repo>` — threads go here
• `/deploy <owner/repo>[@<ref>] to <env>` — deploy a branch, tag or commit
• `/deploy status <owner/repo>` — every environment at a glance
• `/deploy rollback <owner/repo> <env>` — back to the last good commit
• `/deploy lock <owner/repo> <env> [reason]` · `/deploy unlock <owner/repo> <env>`
• `/deploy freeze <owner/repo> until <time> <reason>` · `/deploy unfreeze <owner/repo>`
  (time: `friday`, `18:00`, `2026-12-01`, `2026-12-01T18:00` or `+2h`)
• `/deploy pause|resume <owner/repo> <env>` — hold or continue a canary or verification
• `/deploy link <github-login>` — connect your GitHub account (confirmed on GitHub)
Flags for deploy and rollback: `--force` (override a window, freeze or ordering rule), \
`--queue` (wait behind a lock or rollout), `--dry-run` (say what would happen); \
deploy also takes `--wait` (wait for checks to go green)."""

COMMENT_USAGE = """\
**deploybot** runs the command on the first line of a comment on this pull request:

| Command | What it does |
|---|---|
| `/deploy <env>` | deploy this pull request's head commit to `<env>` |
| `/deploy status` | every environment at a glance |
| `/rollback <env>` | back to the last good commit in `<env>` |
| `/approve <env>` · `/reject <env> [reason]` | decide a deployment that waits for approval |
| `/lock <env> [reason]` · `/unlock <env>` | stop deploys to `<env>`, or let them go again |
| `/deploy pause <env>` · `/deploy resume <env>` | hold or continue a canary or verification |
| `/deploy help` | this message |

Flags for `/deploy` and `/rollback`: `--force` (override a window, freeze or ordering rule), \
`--queue` (wait behind a lock or rollout), `--dry-run` (say what would happen); \
`/deploy` also takes `--wait` (wait for checks to go green)."""


def parse_comment(body: str) -> Command | CommandError | None:
    """Parse the first line of a pull request comment.

    None when that line is not a deploybot command (prose, a `>` quote of someone's command,
    a code block), so only a command someone means to run is ever acted on.
    """
    line = _first_line(body)
    tokens = _tokens(line)
    if not tokens or line.startswith(">") or tokens[0].text.lower() not in _COMMENT_WORDS:
        return None
    verb, rest = _COMMENT_WORDS[tokens[0].text.lower()], tokens[1:]
    if verb is None:
        if rest and _is_help_word(rest[0].text):
            return Command(Verb.HELP)
        verb, rest = _subcommand(rest, _DEPLOY_SUBCOMMANDS)
    if verb is Verb.HELP:
        return Command(Verb.HELP)
    return _parse_arguments(_COMMENT_SPECS[verb or Verb.DEPLOY], rest, line, lenient=True)


def parse_slash(text: str) -> Command | CommandError:
    """Parse the text Slack sends after `/deploy` (empty text asks for help)."""
    line = _unslack(text)
    tokens = _tokens(line)
    if tokens and tokens[0].text.lower() == "deploy":
        tokens = tokens[1:]
    if not tokens or _is_help_word(tokens[0].text):
        return Command(Verb.HELP)
    verb, rest = _subcommand(tokens, _SLACK_SUBCOMMANDS)
    if verb is Verb.HELP:
        return Command(Verb.HELP)
    if verb is None:
        first = next((t.text for t in rest if not _looks_like_flag(t.text)), None)
        if first is not None and "/" not in first:
            return CommandError(_unknown_subcommand(first), SLACK_USAGE)
    return _parse_arguments(_SLACK_SPECS[verb or Verb.DEPLOY], rest, line, lenient=False)


def is_help(text: str) -> bool:
    """True for an empty `/deploy` or `/deploy help` (any case, extra words ignored)."""
    command = parse_slash(text)
    return isinstance(command, Command) and command.verb is Verb.HELP


def render_comment(command: Command) -> str:
    """The PR comment that means `command` (ValueError for a Slack-only verb)."""
    if command.verb is Verb.HELP:
        return "/deploy help"
    if command.verb not in _COMMENT_SPECS:
        raise ValueError(f"{command.verb} is not a pull request comment command")
    return _render(_COMMENT_SPECS[command.verb], _slot_values(command), command)


def render_slash(command: Command) -> str:
    """The text after `/deploy` that means `command` (ValueError for a PR-only verb)."""
    if command.verb is Verb.HELP:
        return "help"
    if command.verb not in _SLACK_SPECS:
        raise ValueError(f"{command.verb} is not a Slack /deploy subcommand")
    return _render(_SLACK_SPECS[command.verb], _slot_values(command), command)


class _Slot(enum.Enum):
    REPOSITORY = "<owner/repo>"
    REPOSITORY_AT_REF = "<owner/repo>[@<ref>]"
    TO = "to"  # optional filler word: "acme/api to stage" and "acme/api stage" both work
    ENVIRONMENT = "<env>"
    UNTIL = "until"  # required keyword, so a reason is never mistaken for a time
    TIME = "<time>"
    LOGIN = "<github-login>"
    CODE = "<code>"


class _Reason(enum.Enum):
    NONE = ""
    OPTIONAL = "[reason]"
    REQUIRED = "<reason>"


_ALL_FLAGS = frozenset(Flag)
# A rollback's target already passed its checks once, so there is nothing to --wait for.
_ROLLBACK_FLAGS = frozenset({Flag.FORCE, Flag.QUEUE, Flag.DRY_RUN})


@dataclass(frozen=True, slots=True)
class _Spec:
    """One command's grammar: its words, then slots, flags and a reason in that order."""

    verb: Verb
    words: tuple[str, ...]
    slots: tuple[_Slot, ...] = ()
    reason: _Reason = _Reason.NONE
    flags: frozenset[Flag] = frozenset()
    slack: bool = False

    @property
    def name(self) -> str:
        return " ".join(("/deploy", *self.words) if self.slack else self.words)

    @property
    def usage(self) -> str:
        parts = [self.name, *(slot.value for slot in self.slots if self._shows(slot))]
        parts += [f"[{flag.option}]" for flag in Flag if flag in self.flags]
        if self.reason is not _Reason.NONE:
            parts.append(self.reason.value)
        return f"Usage: `{' '.join(parts)}`"

    def _shows(self, slot: _Slot) -> bool:
        # `/deploy to stage` is tolerated on a PR but not taught: `/deploy stage` is the form.
        return slot is not _Slot.TO or self.slack


def _specs(*specs: _Spec) -> dict[Verb, _Spec]:
    return {spec.verb: spec for spec in specs}


_ENV = (_Slot.ENVIRONMENT,)
_REPO = (_Slot.REPOSITORY,)
_REPO_ENV = (_Slot.REPOSITORY, _Slot.ENVIRONMENT)
_OPTIONAL, _REQUIRED = _Reason.OPTIONAL, _Reason.REQUIRED

_COMMENT_SPECS = _specs(
    _Spec(Verb.DEPLOY, ("/deploy",), (_Slot.TO, _Slot.ENVIRONMENT), flags=_ALL_FLAGS),
    _Spec(Verb.STATUS, ("/deploy", "status")),
    _Spec(Verb.PAUSE, ("/deploy", "pause"), _ENV),
    _Spec(Verb.RESUME, ("/deploy", "resume"), _ENV),
    _Spec(Verb.ROLLBACK, ("/rollback",), _ENV, flags=_ROLLBACK_FLAGS),
    _Spec(Verb.APPROVE, ("/approve",), _ENV),
    _Spec(Verb.REJECT, ("/reject",), _ENV, _OPTIONAL),
    _Spec(Verb.LOCK, ("/lock",), _ENV, _OPTIONAL),
    _Spec(Verb.UNLOCK, ("/unlock",), _ENV),
    _Spec(Verb.LINK, ("/deploy", "link"), (_Slot.CODE,)),
)

_SLACK_SPECS = _specs(
    _Spec(
        Verb.DEPLOY,
        (),
        (_Slot.REPOSITORY_AT_REF, _Slot.TO, _Slot.ENVIRONMENT),
        flags=_ALL_FLAGS,
        slack=True,
    ),
    _Spec(Verb.SUBSCRIBE, ("subscribe",), _REPO, slack=True),
    _Spec(Verb.UNSUBSCRIBE, ("unsubscribe",), _REPO, slack=True),
    _Spec(Verb.STATUS, ("status",), _REPO, slack=True),
    _Spec(Verb.ROLLBACK, ("rollback",), _REPO_ENV, flags=_ROLLBACK_FLAGS, slack=True),
    _Spec(Verb.LOCK, ("lock",), _REPO_ENV, _OPTIONAL, slack=True),
    _Spec(Verb.UNLOCK, ("unlock",), _REPO_ENV, slack=True),
    _Spec(
        Verb.FREEZE, ("freeze",), (_Slot.REPOSITORY, _Slot.UNTIL, _Slot.TIME), _REQUIRED, slack=True
    ),
    _Spec(Verb.UNFREEZE, ("unfreeze",), _REPO, slack=True),
    _Spec(Verb.PAUSE, ("pause",), _REPO_ENV, slack=True),
    _Spec(Verb.RESUME, ("resume",), _REPO_ENV, slack=True),
    _Spec(Verb.LINK, ("link",), (_Slot.LOGIN,), slack=True),
)

_COMMENT_WORDS: dict[str, Verb | None] = {
    "/deploy": None,
    "/rollback": Verb.ROLLBACK,
    "/approve": Verb.APPROVE,
    "/reject": Verb.REJECT,
    "/lock": Verb.LOCK,
    "/unlock": Verb.UNLOCK,
}
_HELP_WORDS = frozenset({"help", "--help", "-h", "?"})
# `/deploy rollback stage` is what someone used to the Slack form types; it means /rollback.
# `/deploy link <code>` too takes the word `link`: an environment named so is `/deploy to link`.
_DEPLOY_SUBCOMMANDS = {
    verb.value: verb
    for verb in (Verb.HELP, Verb.STATUS, Verb.PAUSE, Verb.RESUME, *_COMMENT_SPECS)
    if verb is not Verb.DEPLOY
}
_DEPLOY_RESERVED = frozenset({"to", *_DEPLOY_SUBCOMMANDS})
_SLACK_SUBCOMMANDS = {
    verb.value: verb for verb in (Verb.HELP, *_SLACK_SPECS) if verb is not Verb.DEPLOY
}
_SLACK_HINTS = {
    "approve": "approve with the button in the thread, or `/approve <env>` on the pull request",
    "reject": "reject with the button in the thread, or `/reject <env>` on the pull request",
}


def _word(text: str) -> str:
    """A command word as typed in a sentence: `status!` is `status`."""
    return text.rstrip(_PUNCTUATION).lower() or text


def _is_help_word(text: str) -> bool:
    return _word(text) in _HELP_WORDS or text in _HELP_WORDS


class _Token(NamedTuple):
    text: str
    start: int


def _tokens(line: str) -> list[_Token]:
    return [_Token(m.group(), m.start()) for m in re.finditer(r"\S+", line)]


def _first_line(body: str) -> str:
    text = body.replace("\r\n", "\n").replace("\r", "\n").strip().lstrip("\ufeff\u200b")
    line = text.strip().split("\n", 1)[0].strip()
    # `/deploy stage` or **/deploy stage**: people format commands; the marks mean nothing.
    wrapping = re.match(r"[`*]+", line)
    if wrapping:
        line = re.sub(f"[{re.escape(wrapping.group())}]", "", line).strip()
    return line


_SLACK_MARKUP = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_SLACK_SPECIALS = frozenset({"here", "channel", "everyone"})


def _unslack(text: str) -> str:
    """Undo Slack's encoding: `<url|label>` → label, mentions → `@name`, entities → text."""

    def plain(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        kind, name = target[:1], target[1:]
        if kind == "@":
            # A bare `<@U123>` has no name to show; left as is, it fails every validation.
            return f"@{label.lstrip('@')}" if label else match.group()
        if kind == "#":
            return f"#{label}" if label else match.group()
        if kind == "!":
            if name in _SLACK_SPECIALS:
                return f"@{name}"
            if name.startswith("subteam^") and label:
                return f"@{label.lstrip('@')}"
            return label or match.group()
        return label or target

    text = _SLACK_MARKUP.sub(plain, text)
    # Slack escapes exactly these three; `&amp;` last, so `&amp;lt;` stays the text `&lt;`.
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _subcommand(tokens: list[_Token], words: dict[str, Verb]) -> tuple[Verb | None, list[_Token]]:
    """The verb named by the first word that is not a flag (flags may come first)."""
    for index, token in enumerate(tokens):
        if not _looks_like_flag(token.text):
            verb = words.get(_word(token.text))
            if verb is None:
                return None, tokens
            return verb, tokens[:index] + tokens[index + 1 :]
    return None, tokens


def _parse_arguments(
    spec: _Spec, tokens: list[_Token], line: str, *, lenient: bool
) -> Command | CommandError:
    """Fill the spec's slots, flags and reason from the tokens after the command words."""
    values: dict[_Slot, str] = {}
    flags: set[Flag] = set()
    slots = list(spec.slots)
    reason_start: int | None = None

    def error(message: str) -> CommandError:
        return CommandError(message, spec.usage, spec.verb)

    for token in tokens:
        text = token.text
        flag = _flag(text) if _looks_like_flag(text) else None
        if flag is not None and flag not in spec.flags:
            # Even inside a reason: the person expects it to act, and it would not.
            return error(f"{_show(text)} does not apply to `{spec.name}`.")
        if reason_start is not None:
            continue
        if flag is not None:
            flags.add(flag)
            continue
        if _looks_like_flag(text) and spec.flags:
            # A verb without flags reads `-bob` as a (bad) value; here it is a mistyped flag.
            return error(_unknown_flag(text, spec))
        if slots and slots[0] is _Slot.TO:
            slots.pop(0)
            if text.lower() == "to":
                continue
        if slots:
            slot = slots.pop(0)
            value = _read_slot(slot, text, spec)
            if isinstance(value, CommandError):
                return value
            values[slot] = value
        elif spec.reason is not _Reason.NONE:
            reason_start = token.start
        elif not lenient:
            return error(f"Unexpected {_show(text)} after `{_render(spec, values)}`.")

    missing = next((slot for slot in slots if slot is not _Slot.TO), None)
    if missing is not None:
        return error(_missing(missing, spec))
    reason = line[reason_start:].strip() if reason_start is not None else ""
    if spec.reason is _Reason.REQUIRED and not reason:
        return error(f"`{spec.name}` needs a reason after the time, so people know why.")
    repository, ref = values.get(_Slot.REPOSITORY), ""
    if _Slot.REPOSITORY_AT_REF in values:
        repository, _, ref = values[_Slot.REPOSITORY_AT_REF].partition("@")
    return Command(
        spec.verb,
        environment=values.get(_Slot.ENVIRONMENT),
        repository=repository,
        ref=ref or None,
        reason=reason or None,
        until=values.get(_Slot.TIME),
        login=values.get(_Slot.LOGIN),
        flags=frozenset(flags),
        code=values.get(_Slot.CODE),
    )


def _read_slot(slot: _Slot, text: str, spec: _Spec) -> str | CommandError:
    def error(message: str) -> CommandError:
        return CommandError(message, spec.usage, spec.verb)

    if slot is _Slot.ENVIRONMENT:
        return _environment(text) or error(_bad_environment(text, spec))
    if slot is _Slot.LOGIN:
        login = text.removeprefix("@")
        if _LOGIN.fullmatch(login) and len(login) <= 39:
            return login
        if text.startswith("<@"):
            return error(f"{_show(text)} is a Slack mention; `{spec.name}` needs a GitHub login.")
        return error(
            f"{_show(text)} is not a GitHub login: letters, digits and single hyphens, "
            "at most 39, not starting or ending with a hyphen."
        )
    if slot is _Slot.CODE:
        # Never quoted back: it may be someone's live code, mistyped by a character.
        code = text.strip(_QUOTES).rstrip(_PUNCTUATION).strip(_QUOTES)
        return code if _CODE.fullmatch(code) and len(code) <= 64 else error(_BAD_CODE)
    if slot is _Slot.UNTIL:
        if text.lower() == "until":
            return "until"
        return error(f"`{spec.name}` needs `until <time>` after the repository, not {_show(text)}.")
    if slot is _Slot.TIME:
        return text
    return _repository(text, spec, with_ref=slot is _Slot.REPOSITORY_AT_REF)


# The pipeline file's rule (bot/pipeline/config.py), so every configured name can be typed.
_ENVIRONMENT = re.compile(r"[a-z0-9][a-z0-9._-]{0,254}")
_LOGIN = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
# Loose on purpose: storage.identities decides what a code is (and forgives typing slips).
_CODE = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
_BAD_CODE = (
    "That is not a link code: it is the letters and digits deploybot showed you in Slack "
    "after `/deploy link <github-login>`."
)
# Lenient on purpose: some old accounts predate today's rule on hyphens.
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}")
_REPOSITORY_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
# git check-ref-format's rules, plus the characters Slack markup and Markdown use.
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\<>`]|\.\.|@\{|//|/\.|^[./-]|[/.]$|\.lock(?:/|$)")
_QUOTES = "\"'`*<>()[]\u2018\u2019\u201c\u201d"
_PUNCTUATION = ".,;:!?"


def _environment(text: str) -> str | None:
    # Quotes and sentence punctuation around a name are prose, not part of it: `/deploy stage!`
    name = text.strip(_QUOTES).rstrip(_PUNCTUATION).strip(_QUOTES).lower()
    return name if _ENVIRONMENT.fullmatch(name) else None


def _bad_environment(text: str, spec: _Spec) -> str:
    if not spec.slack and ("/" in text or "@" in text):
        return (
            f"{_show(text)} is not an environment name. On a pull request, commands act on "
            "its repository and head commit: name only the environment."
        )
    return (
        f"{_show(text)} is not an environment name: letters, digits, `-`, `_` and `.`, "
        "starting with a letter or digit."
    )


def _repository(text: str, spec: _Spec, *, with_ref: bool) -> str | CommandError:
    def error(message: str) -> CommandError:
        return CommandError(message, spec.usage, spec.verb)

    name, at, ref = _repository_path(text.strip(_QUOTES)).partition("@")
    owner, slash, repo = name.removesuffix("/").removesuffix(".git").partition("/")
    if not (slash and owner and repo) or "/" in repo:
        return error(f"{_show(text)} is not a repository: write it as `owner/repo`.")
    if not _OWNER.fullmatch(owner):
        return error(
            f"{_show(owner)} is not a GitHub user or organization: letters, digits and hyphens."
        )
    if not _REPOSITORY_NAME.fullmatch(repo) or repo in {".", ".."}:
        return error(f"{_show(repo)} is not a repository name: letters, digits, `-`, `_` and `.`.")
    if not at:
        return f"{owner}/{repo}"
    if not with_ref:
        return error(f"`{spec.name}` works on the whole repository: drop the `@{_clip(ref)}`.")
    if not ref:
        return error(f"{_show(text)} has nothing after `@`: name a branch, tag or commit.")
    if len(ref) > 255 or ref == "@" or _BAD_REF.search(ref):
        return error(f"{_show(ref)} is not a valid branch, tag or commit name.")
    return f"{owner}/{repo}@{ref}"


def _repository_path(text: str) -> str:
    """`https://github.com/acme/api/tree/main` or `github.com/acme/api` → `acme/api@main`."""
    parts = re.sub(r"^https?://", "", text).split("/")
    if len(parts) > 2 and ("." in parts[0] or ":" in parts[0]):
        parts = parts[1:]
    if len(parts) > 3 and parts[2] in {"tree", "commit"}:
        return f"{parts[0]}/{parts[1]}@{'/'.join(parts[3:])}"
    return "/".join(parts)


# Slack and phone keyboards turn `--` into a dash: `—force` still means `--force`.
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
_FLAG_LIKE = re.compile(f"[{_DASHES}]{{1,2}}[A-Za-z]")
_FLAG_NAMES = {flag.value.replace("-", ""): flag for flag in Flag}


def _looks_like_flag(text: str) -> bool:
    return _FLAG_LIKE.match(text) is not None


def _flag(text: str) -> Flag | None:
    return _FLAG_NAMES.get(_flag_key(text))


def _flag_key(text: str) -> str:
    return text.lstrip(_DASHES).rstrip(_PUNCTUATION).lower().replace("-", "").replace("_", "")


def _unknown_flag(text: str, spec: _Spec) -> str:
    known = [flag for flag in Flag if flag in spec.flags]
    guess = difflib.get_close_matches(_flag_key(text), [f.value.replace("-", "") for f in known])
    hint = f" (did you mean `{_FLAG_NAMES[guess[0]].option}`?)" if guess else ""
    listed = ", ".join(f"`{flag.option}`" for flag in known)
    return f"Unknown flag {_show(text)}{hint}. `{spec.name}` takes {listed}."


def _unknown_subcommand(text: str) -> str:
    word = text.lower()
    if word in _SLACK_HINTS:
        return f"`/deploy {word}` is not a Slack command: {_SLACK_HINTS[word]}."
    guess = difflib.get_close_matches(word, list(_SLACK_SUBCOMMANDS))
    if guess:
        return f"{_show(text)} is not a subcommand; did you mean `{guess[0]}`?"
    return (
        f"{_show(text)} is not a subcommand. To deploy, name the repository: "
        "`/deploy <owner/repo> to <env>`."
    )


def _missing(slot: _Slot, spec: _Spec) -> str:
    if slot is _Slot.ENVIRONMENT:
        return f"`{spec.name}` needs an environment."
    if slot is _Slot.LOGIN:
        return f"`{spec.name}` needs your GitHub login."
    if slot is _Slot.CODE:
        return (
            f"`{spec.name}` needs the code deploybot showed you in Slack after "
            "`/deploy link <github-login>`."
        )
    if slot is _Slot.UNTIL:
        return f"`{spec.name}` needs `until <time>` and a reason."
    if slot is _Slot.TIME:
        return (
            f"`{spec.name}` needs a time after `until`, like `friday`, `18:00`, `2026-12-01` "
            "or `+2h`."
        )
    return f"`{spec.name}` needs a repository, as `owner/repo`."


def _render(spec: _Spec, values: dict[_Slot, str], command: Command | None = None) -> str:
    """The spec's words with these values (a Slack spec's words follow `/deploy`)."""
    parts = list(spec.words) if command else [spec.name]
    for slot in spec.slots:
        if slot is _Slot.TO:
            # `/deploy to status` is how a PR comment deploys an environment named `status`.
            reserved = values.get(_Slot.ENVIRONMENT) in _DEPLOY_RESERVED
            parts += [slot.value] if spec._shows(slot) or reserved else []
        elif slot is _Slot.UNTIL:
            parts.append(slot.value)
        elif slot in values:
            parts.append(values[slot])
    if command is not None:
        parts += [flag.option for flag in Flag if flag in command.flags]
        if command.reason:
            parts.append(command.reason)
    return " ".join(parts)


def _slot_values(command: Command) -> dict[_Slot, str]:
    values = {
        _Slot.ENVIRONMENT: command.environment,
        _Slot.REPOSITORY: command.repository,
        _Slot.TIME: command.until,
        _Slot.LOGIN: command.login,
        _Slot.CODE: command.code,
    }
    if command.repository is not None:
        at_ref = f"@{command.ref}" if command.ref else ""
        values[_Slot.REPOSITORY_AT_REF] = f"{command.repository}{at_ref}"
    return {slot: value for slot, value in values.items() if value is not None}


def _clip(text: str, limit: int = 40) -> str:
    text = text.replace("`", "")
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def _show(text: str) -> str:
    """Outside text quoted for a message: in backticks (so no mentions or links), clipped."""
    return f"`{_clip(text)}`" if text.replace("`", "") else "(nothing)"
