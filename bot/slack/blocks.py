"""Block Kit and mrkdwn builders (pure).

Everything here turns plain values into the `text` and `blocks` of a Slack message; nothing
sends, reads or remembers anything. Outside text (titles, branch names, logins, environment
names) is escaped with `escape()` wherever it lands in mrkdwn, and every text is cut to Block
Kit's limits, so a builder's output is always valid whatever it is given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

Action = Literal["approve", "reject", "promote", "rollback", "pause", "resume"]
PrState = Literal["open", "closed", "merged"]
Outcome = Literal["approved", "rejected", "cancelled"]

ACTIONS: tuple[str, ...] = get_args(Action)

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3_000
MAX_FIELD_TEXT = 2_000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2_000
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300
MAX_CONFIRM_BUTTON = 30
MAX_FALLBACK_TEXT = 200

# Per-piece budgets chosen so that a whole line stays under MAX_SECTION_TEXT however long
# each piece is; cutting a finished line instead could split one of our own `<url|text>`.
_NAME = 100
_LOGIN = 100
_REPO = 200
_REF = 200
_DETAIL = 500
_REASON = 1_000
_URL = 1_000
_LIST = 1_000

ELLIPSIS = "…"

STATUS_STYLE: dict[str, tuple[str, str]] = {
    "pending": ("⏳", "pending"),
    "awaiting_approval": ("✋", "awaiting approval"),
    "queued": ("🕒", "queued"),
    "in_progress": ("🚀", "deploying"),
    "verifying": ("🔍", "verifying health"),
    "success": ("✅", "deployed"),
    "failure": ("❌", "failed"),
    "rolled_back": ("↩️", "rolled back"),
    "rejected": ("🚫", "rejected"),
    "skipped": ("⏭️", "skipped"),
    "cancelled": ("⚪", "cancelled"),
}
NOT_DEPLOYED = ("▫️", "not deployed")
UNKNOWN_STATUS_EMOJI = "❔"

_BUTTON_STYLE: dict[str, str] = {
    "approve": "primary",
    "reject": "danger",
    "promote": "primary",
    "rollback": "danger",
}
_SAFE_URL = re.compile(r"https?://[^\s<>|]+")


def escape(text: str) -> str:
    """Make outside text inert in mrkdwn: no mentions, no links, no `<!channel>`."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Button:
    """A button the caller wants on a message.

    `value` is the caller's opaque id (for example a rollout id) and comes back in the
    interaction payload. `confirm` asks for a confirmation dialog (production actions; a
    rollback confirms in the modal it opens). `target` names the environment the action
    deploys to when it is not the line's own (promote); `label` overrides the default text.
    """

    action: Action
    value: str
    confirm: bool = False
    target: str | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; expected one of {ACTIONS}")
        # An opaque id cannot be shortened without breaking it, so refuse instead of cutting.
        if not self.value or len(self.value) > MAX_BUTTON_VALUE:
            raise ValueError(f"button value must be 1 to {MAX_BUTTON_VALUE} characters")


@dataclass(frozen=True)
class EnvironmentLine:
    """One environment on a status board, in promotion order.

    `status` is a CONTRACT §7 status (any `str`, so a `StrEnum` works) or None when the
    environment was never deployed for this thread. `commit_sha` is what runs there, which
    differs from the head after a rollback.
    """

    name: str
    status: str | None = None
    commit_sha: str | None = None
    requested_by: str | None = None
    updated_at: datetime | None = None
    log_url: str | None = None
    environment_url: str | None = None
    detail: str | None = None
    buttons: tuple[Button, ...] = ()
    weight: int | None = None  # a canary's weight while it rolls out, shown as a bar

    def __post_init__(self) -> None:
        _check_unique(self.buttons)


@dataclass(frozen=True)
class Board:
    """What the parent message of a pull request's (or a pushed commit's) thread shows."""

    repository: str
    pr_number: int | None
    title: str
    author: str
    head_sha: str
    head_ref: str
    pr_url: str | None = None
    pr_state: PrState = "open"
    environments: tuple[EnvironmentLine, ...] = ()


@dataclass(frozen=True)
class ApprovalRequest:
    """A rollout waiting for approval: the thread reply that carries Approve / Reject."""

    repository: str
    environment: str
    commit_sha: str
    requested_by: str
    required: int
    approve: Button
    reject: Button
    approved_by: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    pr_number: int | None = None
    pr_url: str | None = None
    requested_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.approve.action != "approve" or self.reject.action != "reject":
            raise ValueError("approve and reject must be `approve` and `reject` buttons")


@dataclass(frozen=True)
class Message:
    """A Slack message: `text` is the notification fallback, `blocks` what is shown."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def as_kwargs(self) -> dict[str, Any]:
        """Arguments for `chat.postMessage` / `chat.update` (no `blocks` for a text-only reply)."""
        return {"text": self.text, "blocks": self.blocks} if self.blocks else {"text": self.text}


# --------------------------------------------------------------------------- builders


def status_board(board: Board) -> Message:
    """The parent message of a thread: the change, then one line per environment.

    Environments that have buttons get an actions block under their line (an `action_id`
    may appear once per block, and every line may offer `rollback`). When the environments
    do not fit in a message's 50 blocks, the last ones are left out and a note says how many.
    """
    title = _one_line(board.title) or "(no title)"
    prefix = f"#{board.pr_number} " if board.pr_number is not None else ""
    blocks: list[dict[str, Any]] = [_header(prefix + title), _section(_summary(board))]
    note = _state_note(board.pr_state)
    if note:
        blocks.append(_context(note))
    blocks.append({"type": "divider"})

    envs = board.environments
    if not envs:
        blocks.append(_context("No environments configured for this repository."))
    shown = 0
    for index, env in enumerate(envs):
        after = _line_blocks(env, next_env=_next_name(envs, index), head_sha=board.head_sha)
        remaining = len(envs) - index - 1
        room = MAX_BLOCKS - len(blocks) - (1 if remaining else 0)
        if len(after) > room:
            break
        blocks.extend(after)
        shown += 1
    if shown < len(envs):
        left = len(envs) - shown
        noun = "environment" if left == 1 else "environments"
        blocks.append(
            _context(f"{left} more {noun} not shown: use `/deploy status` for all of them.")
        )
    return Message(text=_board_fallback(board, title), blocks=blocks)


def approval_request(request: ApprovalRequest) -> Message:
    """A thread reply asking for approval, with Approve (primary) and Reject (danger)."""
    env = _esc(request.environment or "?", _NAME)
    sha = _code(_short(request.commit_sha))
    who = _esc(request.requested_by or "someone", _LOGIN)
    where = _change_link(request.repository, request.pr_number, request.pr_url)
    ask = f"✋ *{who}* asks to deploy {sha} to *{env}*" + (f" ({where})" if where else "")
    given = len(request.approved_by)
    count = f"*Approvals:* {given} of {request.required}"
    if request.approved_by:
        count += f" (by {_names(request.approved_by)})"
    may = _names(request.approvers) if request.approvers else "anyone with permission"
    blocks: list[dict[str, Any]] = [
        _section(ask),
        _section(f"{count}\n*Who may approve:* {may} (not the requester)"),
    ]
    if request.requested_at is not None:
        blocks.append(_context(f"Requested {_date(request.requested_at)}"))
    env_name = request.environment or "?"
    blocks.append(
        {
            "type": "actions",
            "elements": [
                _button(b, env=env_name, target=env_name, sha=request.commit_sha)
                for b in (request.approve, request.reject)
            ],
        }
    )
    text = (
        f"Approval needed: {_short(request.commit_sha)} to {_clip(_one_line(env_name), 60)}"
        f" in {_one_line(request.repository)}"
    )
    return Message(text=_esc(text, MAX_FALLBACK_TEXT), blocks=blocks)


def decided(
    request: ApprovalRequest,
    outcome: Outcome,
    *,
    by: Sequence[str] = (),
    reason: str | None = None,
    at: datetime | None = None,
) -> Message:
    """The approval message once decided: same facts, no buttons, and who decided.

    `approved` lists every approver ("Approved by X, Y"); `rejected` names who rejected
    and why ("Rejected by X: reason"); `cancelled` says why the request no longer holds
    (for example the pull request's head moved).
    """
    env = _esc(request.environment or "?", _NAME)
    sha = _code(_short(request.commit_sha))
    who = _esc(request.requested_by or "someone", _LOGIN)
    where = _change_link(request.repository, request.pr_number, request.pr_url)
    ask = f"*{who}* asked to deploy {sha} to *{env}*" + (f" ({where})" if where else "")
    deciders = _names(by) if by else "someone"
    why = _esc(_one_line(reason or ""), _REASON)
    if outcome == "approved":
        verdict = f"✅ *Approved* by {deciders}"
    elif outcome == "rejected":
        verdict = f"🚫 *Rejected* by {deciders}" + (f": {why}" if why else "")
    else:
        verdict = "⚪ *Cancelled*" + (f": {why}" if why else "")
    blocks: list[dict[str, Any]] = [_section(f"{verdict}\n{ask}")]
    if at is not None:
        blocks.append(_context(f"Decided {_date(at)}"))
    text = {"approved": "Approved", "rejected": "Rejected", "cancelled": "Cancelled"}[outcome]
    if outcome != "cancelled":
        text += " by " + (", ".join(_one_line(name) for name in by) or "someone")
    if reason and outcome != "approved":
        text += f": {_clip(_one_line(reason), 100)}"
    text += f" ({_short(request.commit_sha)} to {_clip(_one_line(request.environment), 60)})"
    return Message(text=_esc(text, MAX_FALLBACK_TEXT), blocks=blocks)


# --------------------------------------------------------------------------- repository at a glance

MAX_HOME_BLOCKS = 100

# Tighter than `_URL`: a line carries two links and a lock and an approval note, and must
# still fit one section (see `repository_line`).
_LINE_URL = 500
_TITLE = 60
_LOCK_REASON = 300
_APPROVERS = 300
_PROBLEM = 500
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,30}")
_MESSAGE_TS = re.compile(r"\d{1,12}\.\d{1,9}")


@dataclass(frozen=True)
class LockNote:
    """A lock held on an environment: who holds it, since when, until when and why."""

    holder: str
    since: datetime | None = None
    expires_at: datetime | None = None
    reason: str | None = None


@dataclass(frozen=True)
class ApprovalNote:
    """A rollout waiting for approval: `given` of `needed` approvals, and by whom."""

    given: int
    needed: int
    approved_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnvironmentStatus:
    """One environment of a repository at a glance (`/deploy status owner/repo`, App Home).

    `status`, `commit_sha`, `requested_by` and `updated_at` describe the rollout under way
    there, else the one that last finished there; `last_status` and `last_sha` what finished
    there before the one under way. `pr_number`, `title` and `pr_url` name the change it
    belongs to, `thread_url` its Slack thread (see `thread_url()`).
    """

    name: str
    status: str | None = None
    commit_sha: str | None = None
    requested_by: str | None = None
    updated_at: datetime | None = None
    pr_number: int | None = None
    title: str | None = None
    pr_url: str | None = None
    thread_url: str | None = None
    last_status: str | None = None
    last_sha: str | None = None
    lock: LockNote | None = None
    approval: ApprovalNote | None = None
    buttons: tuple[Button, ...] = ()

    def __post_init__(self) -> None:
        _check_unique(self.buttons)


@dataclass(frozen=True)
class RepositoryStatus:
    """A repository's environments in promotion order; `problem` says why its pipeline file
    cannot be read (nothing deploys until it is fixed)."""

    repository: str
    environments: tuple[EnvironmentStatus, ...] = ()
    problem: str | None = None


def thread_url(channel: str | None, ts: str | None, *, team_url: str | None = None) -> str | None:
    """A link to a Slack message: `<team_url>archives/<channel>/p<ts without dot>`.

    `team_url` is the workspace's (`auth.test` gives it); without one, `https://slack.com/`
    sends the reader to their own workspace. None when the channel or ts is not Slack's shape.
    """
    if not channel or not ts or not _CHANNEL_ID.fullmatch(channel) or not _MESSAGE_TS.fullmatch(ts):
        return None
    base = team_url if team_url and _safe_url(team_url) else "https://slack.com/"
    return f"{base.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"


def repository_line(env: EnvironmentStatus) -> str:
    """One environment as mrkdwn: `status_line` (emoji, state, commit, who, when), the change
    and its thread, then what finished before, the approval waiting and the lock.

    Each piece has its own budget, so a line stays under `MAX_SECTION_TEXT` however long any
    outside text is (about 2,500 characters at most).
    """
    head = EnvironmentLine(env.name, env.status, env.commit_sha, env.requested_by, env.updated_at)
    parts = [status_line(head)]
    change = _change_of(env)
    if change:
        parts.append(change)
    if _line_url(env.thread_url):
        parts.append(_link(env.thread_url, "thread"))
    line = " · ".join(parts)
    if env.last_status is not None or env.last_sha:
        emoji, label = _status_style(env.last_status)
        last = _code(_short(env.last_sha or ""))
        line += f"\n↳ before: {emoji} {label}" + (f" {last}" if last else "")
    if env.approval is not None:
        note = env.approval
        line += f"\n✋ *Approvals:* {max(note.given, 0)} of {max(note.needed, 0)}"
        if note.approved_by:
            line += f" (by {_names(note.approved_by, _APPROVERS)})"
    if env.lock is not None:
        line += "\n" + _lock_text(env.lock)
    return line


def repository_status(repository: RepositoryStatus) -> Message:
    """`/deploy status owner/repo`: a compact board, one line per environment, no buttons.

    Lines share sections up to Block Kit's 3,000 characters; environments that do not fit in
    a message's 50 blocks are left out and a note says how many.
    """
    blocks: list[dict[str, Any]] = [_header(_one_line(repository.repository) or "?")]
    if repository.problem:
        blocks.append(_context(_problem_text(repository.problem)))
    envs = repository.environments
    if not envs:
        blocks.append(_context("Nothing deployed yet."))
    lines = [repository_line(env) for env in envs]
    shown = len(lines)
    while shown and len(blocks) + len(_packed(lines[:shown])) + (shown < len(lines)) > MAX_BLOCKS:
        shown -= 1
    blocks.extend(_section(text) for text in _packed(lines[:shown]))
    if shown < len(lines):
        left = len(lines) - shown
        blocks.append(_context(_more(left, "environment", command=repository.repository)))
    summary = ", ".join(f"{_one_line(e.name)} {_status_label(e.status)}" for e in envs)
    text = f"{_one_line(repository.repository)}: {summary or 'nothing deployed yet'}"
    return Message(text=_esc(text, MAX_FALLBACK_TEXT), blocks=blocks)


def home_view(
    usage: str,
    repositories: Sequence[RepositoryStatus] = (),
    *,
    more: int = 0,
    notice: str | None = None,
) -> dict[str, Any]:
    """The App Home tab: each repository's environments with the thread board's buttons,
    then how to drive deploybot (`usage`, our own mrkdwn).

    Repositories are shown in the order given while they fit in a home tab's 100 blocks (the
    one that does not fit whole shows the environments that do); a note counts the ones left
    out, including `more` the caller did not pass at all. `notice` (our own mrkdwn) answers
    the click that republished the tab, since a home tab cannot show ephemeral messages.
    """
    blocks: list[dict[str, Any]] = [_header("deploybot")]
    if notice:
        blocks.append(_section(_clip(notice, MAX_SECTION_TEXT)))
    if repositories:
        blocks.append(
            _context(
                "Every subscribed repository: what runs in each environment, locks and "
                "approvals waiting. Buttons work as in the threads."
            )
        )
    else:
        blocks.append(
            _section(
                "Ship pull requests through your environments from Slack and from PR "
                "comments. Subscribe a channel to a repository to get a thread for each pull "
                "request" + ("." if more else ": `/deploy subscribe owner/repo`.")
            )
        )
    tail = [{"type": "divider"}, _section(_clip(usage.strip() or "`/deploy help`", 3_000))]
    shown = 0
    for index, repository in enumerate(repositories):
        left = len(repositories) - index - 1 + max(more, 0)
        room = MAX_HOME_BLOCKS - len(blocks) - len(tail) - (1 if left else 0)
        part, whole = _home_repository(repository, index, room)
        if not part:
            break
        blocks.extend(part)
        shown += 1
        if not whole:
            break
    left_out = len(repositories) - shown + max(more, 0)
    if left_out:
        blocks.append(_context(_more(left_out, "repository", plural="repositories")))
    return {"type": "home", "blocks": [*blocks, *tail]}


def _home_repository(
    repository: RepositoryStatus, index: int, room: int
) -> tuple[list[dict[str, Any]], bool]:
    """A repository's blocks within `room`, and whether every environment fitted; no blocks
    when not even its title does."""
    whole = _repository_blocks(repository, index, len(repository.environments))
    if len(whole) <= room:
        return whole, True
    # Cut short, the count of blocks grows with the environments shown: find the most that fit.
    low, high, best = 0, len(repository.environments) - 1, None
    while low <= high:
        middle = (low + high) // 2
        blocks = _repository_blocks(repository, index, middle)
        if len(blocks) <= room:
            low, best = middle + 1, blocks
        else:
            high = middle - 1
    return best or [], False


def _repository_blocks(
    repository: RepositoryStatus, index: int, shown: int
) -> list[dict[str, Any]]:
    """A divider, the title and the first `shown` environments: lines share a section until
    one has buttons, whose actions block follows its line (an action_id may appear once per
    block; block_ids are unique in the view)."""
    title = f"📦 *{_esc(_one_line(repository.repository) or '?', _REPO)}*"
    if repository.problem:
        title += "\n" + _problem_text(repository.problem)
    if not repository.environments:
        title += "\nNothing deployed yet."
    blocks: list[dict[str, Any]] = [{"type": "divider"}]
    pending = [title]
    for position, env in enumerate(repository.environments[:shown]):
        pending.append(repository_line(env))
        if env.buttons:
            blocks.extend(_section(text) for text in _packed(pending))
            pending = []
            sha = env.commit_sha or ""
            elements = [
                _button(b, env=env.name, target=b.target or env.name, sha=sha) for b in env.buttons
            ]
            blocks.append(
                {"type": "actions", "block_id": f"home:{index}:{position}", "elements": elements}
            )
    left = len(repository.environments) - shown
    if left:
        pending.append(_more(left, "environment", command=repository.repository))
    blocks.extend(_section(text) for text in _packed(pending))
    return blocks


def _packed(texts: Sequence[str]) -> list[str]:
    """Join lines into as few section texts as fit `MAX_SECTION_TEXT` (each line fits alone)."""
    sections: list[str] = []
    for text in texts:
        if sections and len(sections[-1]) + 1 + len(text) <= MAX_SECTION_TEXT:
            sections[-1] += "\n" + text
        else:
            sections.append(text)
    return sections


def _change_of(env: EnvironmentStatus) -> str:
    number = f"#{env.pr_number}" if env.pr_number is not None else ""
    title = _esc(_one_line(env.title or ""), _TITLE)
    text = " ".join(part for part in (number, title) if part)
    if _line_url(env.pr_url):
        return _link(env.pr_url, text or "commit")
    return text


def _lock_text(lock: LockNote) -> str:
    text = f"🔒 *Locked* by {_esc(_one_line(lock.holder) or 'someone', _LOGIN)}"
    if lock.since is not None:
        text += f" since {_date(lock.since)}"
    if lock.expires_at is not None:
        text += f" until {_date(lock.expires_at)}"
    reason = _esc(_one_line(lock.reason or ""), _LOCK_REASON)
    return text + (f": {reason}" if reason else "")


def _problem_text(problem: str) -> str:
    return (
        f"⚠️ The pipeline file is invalid, so nothing deploys: {_esc(_one_line(problem), _PROBLEM)}"
    )


def _more(count: int, noun: str, *, plural: str | None = None, command: str | None = None) -> str:
    nouns = noun if count == 1 else plural or f"{noun}s"
    command = _code(f"/deploy status {_one_line(command or '') or 'owner/repo'}", _REPO + 20)
    return f"{count} more {nouns} not shown: use {command} for all of them."


def _status_label(status: str | None) -> str:
    """The words of `_status_style`, unescaped (for text that is escaped whole later)."""
    if status is None:
        return NOT_DEPLOYED[1]
    known = STATUS_STYLE.get(str(status))
    return known[1] if known else _clip(_one_line(str(status)) or "unknown", 40)


def _line_url(url: str | None) -> bool:
    return _safe_url(url) and len(url or "") <= _LINE_URL


# --------------------------------------------------------------------------- pieces


def status_line(env: EnvironmentLine, *, head_sha: str | None = None) -> str:
    """One environment as mrkdwn: emoji, name, status, commit, who and when."""
    emoji, label = _status_style(env.status)
    parts = [f"{emoji} *{_esc(_one_line(env.name) or '?', _NAME)}*: {label}"]
    if env.commit_sha:
        commit = _code(_short(env.commit_sha))
        if head_sha and not _same_commit(env.commit_sha, head_sha):
            commit += " (not the head)"
        parts.append(commit)
    if env.requested_by:
        parts.append(f"by {_esc(_one_line(env.requested_by), _LOGIN)}")
    if env.weight is not None:
        parts.append(f"canary `{_bar(env.weight)}`")
    if env.updated_at is not None:
        parts.append(_date(env.updated_at))
    links = [
        _link(url, text)
        for url, text in ((env.log_url, "logs"), (env.environment_url, "open"))
        if _safe_url(url)
    ]
    if links:
        parts.append(" ".join(links))
    line = " · ".join(parts)
    if env.detail and env.detail.strip():
        line += f"\n{_esc(env.detail.strip(), _DETAIL)}"
    return line


def _bar(weight: int, width: int = 10) -> str:
    """A canary's weight as a progress bar: `▓▓▓░░░░░░░ 25%`."""
    weight = max(0, min(100, weight))
    filled = round(weight * width / 100)
    return "▓" * filled + "░" * (width - filled) + f" {weight}%"


def _status_style(status: str | None) -> tuple[str, str]:
    if status is None:
        return NOT_DEPLOYED
    known = STATUS_STYLE.get(str(status))
    if known:
        return known
    return UNKNOWN_STATUS_EMOJI, _esc(_one_line(str(status)) or "unknown", 40)


def _line_blocks(
    env: EnvironmentLine, *, next_env: str | None, head_sha: str
) -> list[dict[str, Any]]:
    blocks = [_section(status_line(env, head_sha=head_sha))]
    if env.buttons:
        sha = env.commit_sha or head_sha
        elements = []
        for button in env.buttons:
            default_target = next_env if button.action == "promote" else env.name
            target = button.target or default_target or env.name
            elements.append(_button(button, env=env.name, target=target, sha=sha))
        blocks.append({"type": "actions", "elements": elements})
    return blocks


def _next_name(envs: Sequence[EnvironmentLine], index: int) -> str | None:
    return envs[index + 1].name if index + 1 < len(envs) else None


def _summary(board: Board) -> str:
    change = _change_link(board.repository, board.pr_number, board.pr_url)
    author = _esc(_one_line(board.author) or "unknown", _LOGIN)
    head = " on ".join(
        part
        for part in (_code(_short(board.head_sha)), _code(_one_line(board.head_ref), _REF))
        if part
    )
    return f"{change} by *{author}*" + (f" · {head}" if head else "")


def _change_link(repository: str, pr_number: int | None, url: str | None) -> str:
    repo = _esc(_one_line(repository) or "?", _REPO)
    text = f"{repo}#{pr_number}" if pr_number is not None else repo
    return _link(url, text) if _safe_url(url) else text


def _state_note(state: str) -> str:
    if state == "merged":
        return "🟣 *Merged*"
    if state == "closed":
        return "🔒 *Closed* without merging"
    return ""


def _board_fallback(board: Board, title: str) -> str:
    if board.pr_number is not None:
        change = f"{board.repository}#{board.pr_number}"
    else:
        change = f"{board.repository}@{_short(board.head_sha)}"
    state = f" ({board.pr_state})" if board.pr_state != "open" else ""
    return _esc(f"{_one_line(change)}: {title}{state}", MAX_FALLBACK_TEXT)


def _button(button: Button, *, env: str, target: str, sha: str) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "action_id": button.action,
        "value": button.value,
        "text": _plain(button.label or _default_label(button.action, target), MAX_BUTTON_TEXT),
    }
    style = _BUTTON_STYLE.get(button.action)
    if style:
        element["style"] = style
    if button.confirm:
        element["confirm"] = _confirm(button.action, env=env, target=target, sha=sha)
    return element


def _default_label(action: str, target: str) -> str:
    if action == "promote":
        return f"Promote to {_one_line(target)}"
    return {
        "approve": "Approve",
        "reject": "Reject",
        "rollback": "Roll back",
        "pause": "Pause",
        "resume": "Resume",
    }[action]


def _confirm(action: str, *, env: str, target: str, sha: str) -> dict[str, Any]:
    env, target = _clip(_one_line(env), 60), _clip(_one_line(target), 60)
    short = _clip(_short(sha), 12)
    if action == "promote" and target == env:
        title, text, verb = (
            f"Promote the canary in {env}?",
            f"Take {short} to the next canary step in {env}.",
            "Promote",
        )
        return _confirm_dialog(title, text, verb, danger=False)
    title, text, verb = {
        "approve": (f"Approve deploy to {target}?", f"Deploy {short} to {target}.", "Approve"),
        "reject": (
            f"Reject deploy to {target}?",
            f"{short} will not be deployed to {target}.",
            "Reject",
        ),
        "promote": (
            f"Deploy to {target}?",
            f"Deploy {short} to {target}, promoting it from {env}.",
            "Deploy",
        ),
        "rollback": (
            f"Roll back {env}?",
            f"Redeploy the last commit that succeeded in {env}, replacing {short}.",
            "Roll back",
        ),
        "pause": (
            f"Pause {env}?",
            f"Hold the rollout of {short} in {env}: nothing is promoted or rolled back "
            "automatically until it is resumed.",
            "Pause",
        ),
        "resume": (f"Resume {env}?", f"Continue the rollout of {short} in {env}.", "Resume"),
    }[action]
    return _confirm_dialog(title, text, verb, danger=action in ("reject", "rollback"))


def _confirm_dialog(title: str, text: str, verb: str, *, danger: bool) -> dict[str, Any]:
    return {
        "title": _plain(title, MAX_CONFIRM_TITLE),
        "text": _plain(text, MAX_CONFIRM_TEXT),
        "confirm": _plain(verb, MAX_CONFIRM_BUTTON),
        "deny": _plain("Cancel", MAX_CONFIRM_BUTTON),
        "style": "danger" if danger else "primary",
    }


def _check_unique(buttons: Iterable[Button]) -> None:
    actions = [b.action for b in buttons]
    if len(actions) != len(set(actions)):
        raise ValueError(f"an environment line offers each action at most once: {actions}")


# --------------------------------------------------------------------------- text


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": _plain(text, MAX_HEADER_TEXT)}


def _section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(mrkdwn)}


def _context(mrkdwn: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(mrkdwn)]}


def _mrkdwn(text: str) -> dict[str, Any]:
    # verbatim: Slack would otherwise turn a bare `@channel` or URL in a title into a live
    # mention or link; our own `<url|text>` and `<!date…>` still render.
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": _clip(_one_line(text) or "?", limit), "emoji": True}


def _clip(text: str, limit: int) -> str:
    """Cut plain text to `limit` characters, ending with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def _esc(text: str, limit: int) -> str:
    """Escape outside text and cut it to `limit` characters without splitting an entity."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + ELLIPSIS


_BACKTICK_LOOKALIKE = "\u02cb"


def _code(text: str, limit: int = 40) -> str:
    # A backtick would end the code span early; swap it for a look-alike that cannot.
    if not text:
        return ""
    return f"`{_esc(text.replace('`', _BACKTICK_LOOKALIKE), limit)}`"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short(sha: str) -> str:
    return _one_line(sha)[:7]


def _same_commit(a: str, b: str) -> bool:
    a, b = a.strip().lower(), b.strip().lower()
    return a.startswith(b) or b.startswith(a)


def _names(names: Iterable[str], limit: int = _LIST) -> str:
    """`a, b and 3 more`, escaped, within `limit` characters."""
    clean = [_esc(_one_line(n), _LOGIN) for n in names if _one_line(n)]
    shown: list[str] = []
    for index, name in enumerate(clean):
        rest = len(clean) - index - 1
        tail = f" and {rest} more" if rest else ""
        if len(", ".join([*shown, name])) + len(tail) > limit:
            break
        shown.append(name)
    more = len(clean) - len(shown)
    text = ", ".join(shown)
    if more:
        text += f" and {more} more" if shown else f"{more} people"
    return text or "nobody"


def _safe_url(url: str | None) -> bool:
    return bool(url) and len(url or "") <= _URL and _SAFE_URL.fullmatch(url or "") is not None


def _link(url: str | None, text: str) -> str:
    """Our own `<url|text>`; `text` must already be escaped, `url` checked by `_safe_url`."""
    return f"<{url}|{text}>"


def _date(when: datetime) -> str:
    """Slack's date token: shown in the reader's time zone, with a UTC fallback."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    stamp = int(when.timestamp())
    fallback = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{stamp}^{{date_short_pretty}} {{time}}|{fallback}>"
