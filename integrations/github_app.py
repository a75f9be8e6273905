"""The bot's GitHub client: a GitHub App (JWT) and its installations (installation tokens).

githubkit does the work: App JWTs, installation tokens cached until a minute before they
expire, typed requests with body validation, retries on rate limits and 5xx. This module
narrows it to the calls the bot makes, returns plain dataclasses, and turns githubkit's
and httpx's exceptions into `GitHubError` and its subclasses, so nothing else imports
githubkit.

    app = GitHubApp(app_id=settings.github_app_id, private_key=settings.private_key_pem(),
                    base_url=settings.github_api_url)
    github = app.installation(installation_id)
    deployment = await github.create_deployment(owner="acme", repo="api", ref=sha,
                                                environment="stage", payload={...})
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import jwt
import pydantic
from githubkit import AppAuthStrategy, AppInstallationAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import (
    GitHubException,
    RateLimitExceeded,
    RequestError,
    RequestFailed,
    RequestTimeout,
)
from githubkit.retry import RetryChainDecision, RetryOption, RetryRateLimit, RetryServerError

DEFAULT_API_URL = "https://api.github.com"
# GitHub refuses longer deployment status descriptions with a 422.
MAX_STATUS_DESCRIPTION = 140
# Pages of 100 read from a paginated list at most (GitHub caps a commit at 1000 statuses).
MAX_PAGES = 10

DeploymentState = Literal[
    "error", "failure", "inactive", "in_progress", "queued", "pending", "success"
]


# --- errors ------------------------------------------------------------------------------


class GitHubError(Exception):
    """GitHub refused or failed a call. Messages name the call, never a credential."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GitHubNotFound(GitHubError):
    """404: the thing does not exist, or the installation cannot see it."""


class GitHubPermissionDenied(GitHubError):
    """401 or 403 (not a rate limit): bad credentials or a missing App permission."""


class GitHubRateLimited(GitHubError):
    """A primary or secondary rate limit; try again in `retry_after` seconds."""

    def __init__(self, message: str, *, status: int | None, retry_after: float) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class GitHubServerError(GitHubError):
    """5xx, still failing after the retries."""


class GitHubUnavailable(GitHubError):
    """GitHub could not be reached or did not answer in time."""


class GitHubValidationFailed(GitHubError):
    """422 (or a body that githubkit refused to send): the request itself is wrong."""


# --- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AppInfo:
    id: int
    slug: str | None
    name: str
    owner_login: str | None
    html_url: str


@dataclass(frozen=True)
class Repository:
    id: int
    full_name: str
    default_branch: str
    private: bool
    html_url: str


@dataclass(frozen=True)
class Commit:
    sha: str
    message: str
    author_login: str | None
    html_url: str

    @property
    def title(self) -> str:
        """The first line of the commit message."""
        return self.message.strip().split("\n", 1)[0]


@dataclass(frozen=True)
class Deployment:
    id: int
    sha: str
    ref: str
    environment: str
    payload: dict[str, Any] = field(default_factory=dict)
    task: str = "deploy"
    description: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class DeploymentStatus:
    id: int
    state: str
    description: str
    environment: str | None
    environment_url: str | None
    log_url: str | None
    created_at: datetime | None


@dataclass(frozen=True)
class PullRequest:
    number: int
    title: str
    state: str
    merged: bool
    head_sha: str
    head_ref: str
    base_ref: str
    user_login: str
    html_url: str


@dataclass(frozen=True)
class CommitStatus:
    """The latest commit status of one context (`success`, `pending`, `failure`, `error`)."""

    context: str
    state: str
    description: str | None = None
    target_url: str | None = None


@dataclass(frozen=True)
class CombinedStatus:
    """A commit's statuses, the latest per context. GitHub's `state` is `pending` when there
    are none at all, so read `statuses` to tell "nothing reported" from "still running"."""

    sha: str
    state: str
    statuses: tuple[CommitStatus, ...]


@dataclass(frozen=True)
class CheckRun:
    """One check run on a commit; `conclusion` is None until `status` is `completed`."""

    id: int
    name: str
    status: str
    conclusion: str | None
    html_url: str | None = None


@dataclass(frozen=True)
class HookDelivery:
    """One attempt to deliver a webhook to the App. A redelivery is a new attempt (a new
    `id`) with the same `guid`, the `X-GitHub-Delivery` header the bot received."""

    id: int
    guid: str
    delivered_at: datetime
    redelivery: bool
    status: str
    status_code: int | None
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None

    @property
    def failed(self) -> bool:
        """The App's endpoint did not take it: an error status, or no answer (code 0)."""
        return not self.status_code or self.status_code >= 400


@dataclass(frozen=True)
class HookDeliveryPage:
    """Deliveries newest first; `next_cursor` asks for the next (older) page, None at the end."""

    deliveries: tuple[HookDelivery, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class IssueComment:
    """A comment on an issue or pull request: what the outbox reads to find its own."""

    id: int
    body: str


@dataclass(frozen=True)
class IssueCommentPage:
    """Comments oldest first (GitHub orders them by id); `next_page` asks for the next page,
    None on the last one."""

    comments: tuple[IssueComment, ...]
    next_page: int | None


# --- the App -----------------------------------------------------------------------------


class GitHubApp:
    """A GitHub App's configuration; `installation(id)` gives the client that does the work.

    `base_url` is `GITHUB_API_URL` (GitHub Enterprise Server: `https://HOST/api/v3`).
    Rate limits, and 5xx to requests that are safe to repeat (not a POST or PATCH, whose
    effect may have happened), are retried at most `max_retries` times, waiting what GitHub asks
    (`retry-after`, `x-ratelimit-reset`) or 1, 4, 9 s for 5xx, times `retry_scale`; a wait
    longer than `max_retry_wait` seconds is not slept but raised as `GitHubRateLimited`, so
    a worker can reschedule instead of blocking. `timeout` bounds each request, in seconds.
    """

    def __init__(
        self,
        *,
        app_id: int | str,
        private_key: str,
        base_url: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 3,
        max_retry_wait: float = 60.0,
        retry_scale: float = 1.0,
        user_agent: str = "deploybot",
    ) -> None:
        self.app_id = app_id
        self.base_url = base_url or DEFAULT_API_URL
        self.timeout = timeout
        self._private_key = private_key
        # One cache for the App and every installation: githubkit keeps the JWT and each
        # installation's token there. Its default is a process-wide cache shared by every
        # GitHub object, which would mix up Apps (and test runs) that reuse ids.
        self._cache = MemCacheStrategy()
        self._options: dict[str, Any] = {
            "base_url": self.base_url,
            "user_agent": user_agent,
            "timeout": httpx.Timeout(timeout),
            # githubkit opens a client per request; a shared context spares loading the CA
            # bundle each time (~40 ms of CPU a call).
            "ssl_verify": httpx.create_ssl_context(),
            "cache_strategy": self._cache,
            "http_cache": False,
            "auto_retry": _BoundedRetry(
                max_retries=max_retries, max_wait=max_retry_wait, scale=retry_scale
            ),
        }
        self._installations: dict[int, InstallationClient] = {}

    def __repr__(self) -> str:
        return f"GitHubApp(app_id={self.app_id!r}, base_url={self.base_url!r})"

    def installation(self, installation_id: int) -> InstallationClient:
        """The client acting as one installation of the App (tokens cached and renewed)."""
        client = self._installations.get(installation_id)
        if client is None:
            auth = AppInstallationAuthStrategy(self.app_id, self._private_key, installation_id)
            client = InstallationClient(installation_id, GitHub(auth, **self._options))
            self._installations[installation_id] = client
        return client

    async def get_app(self) -> AppInfo:
        """The App itself (`GET /app`, authenticated with the App's JWT)."""
        github = GitHub(AppAuthStrategy(self.app_id, self._private_key), **self._options)
        async with _translated_errors():
            data = (await github.rest.apps.async_get_authenticated()).json()
        if not data:
            raise GitHubNotFound("GET /app returned no App", status=200)
        return AppInfo(
            id=data["id"],
            slug=data.get("slug"),
            name=data["name"],
            owner_login=(data.get("owner") or {}).get("login"),
            html_url=data["html_url"],
        )

    async def list_hook_deliveries(
        self, *, cursor: str | None = None, per_page: int = 100
    ) -> HookDeliveryPage:
        """One page of the App's webhook deliveries, newest first (`GET /app/hook/deliveries`,
        with the App's JWT). GitHub pages this list with an opaque cursor, found in the
        Link header's `rel="next"` URL; pass `next_cursor` back for the next page."""
        options = {"cursor": cursor} if cursor is not None else {}
        async with _translated_errors():
            response = await self._app_github.rest.apps.async_list_webhook_deliveries(
                per_page=per_page, **options
            )
        following = response.raw_response.links.get("next", {}).get("url")
        next_cursor = httpx.URL(following).params.get("cursor") if following else None
        deliveries = tuple(_hook_delivery(item) for item in response.json())
        return HookDeliveryPage(deliveries=deliveries, next_cursor=next_cursor)

    async def redeliver(self, delivery_id: int) -> None:
        """Ask GitHub to deliver a webhook again (`POST /app/hook/deliveries/{id}/attempts`).
        GitHub accepts (202) and makes a new attempt, listed with the same guid; it refuses
        deliveries older than three days."""
        async with _translated_errors():
            await self._app_github.rest.apps.async_redeliver_webhook_delivery(delivery_id)

    @functools.cached_property
    def _app_github(self) -> GitHub[Any]:
        """The client authenticated as the App itself (JWTs cached in the shared cache)."""
        return GitHub(AppAuthStrategy(self.app_id, self._private_key), **self._options)


class InstallationClient:
    """The calls the bot makes as one installation. Arguments are keyword-only; results are
    plain values and dataclasses.

    Responses are read as JSON rather than through githubkit's models: a model that
    requires a field the server leaves out (GHES lags api.github.com; even GitHub's own
    examples miss `language` and `role_name`) would fail a call whose fields we never use.
    """

    def __init__(self, installation_id: int, github: GitHub[Any]) -> None:
        self.installation_id = installation_id
        self._github = github

    def __repr__(self) -> str:
        return f"InstallationClient(installation_id={self.installation_id!r})"

    async def get_repository(self, *, owner: str, repo: str) -> Repository:
        async with _translated_errors():
            data = (await self._github.rest.repos.async_get(owner, repo)).json()
        return Repository(
            id=data["id"],
            full_name=data["full_name"],
            default_branch=data["default_branch"],
            private=data["private"],
            html_url=data["html_url"],
        )

    async def get_file(
        self, *, owner: str, repo: str, path: str, ref: str | None = None
    ) -> str | None:
        """A file's text at `ref` (default: the default branch), or None if there is none."""
        kwargs = {"ref": ref} if ref is not None else {}
        try:
            async with _translated_errors():
                response = await self._github.rest.repos.async_get_content(
                    owner, repo, path.lstrip("/"), **kwargs
                )
        except GitHubNotFound:
            return None
        data = response.json()
        if not isinstance(data, dict) or data.get("type") != "file":
            return None
        if data.get("encoding") != "base64":
            raise GitHubError(f"{path} in {owner}/{repo} is too large to read through the API")
        try:
            return base64.b64decode(data["content"]).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise GitHubError(f"{path} in {owner}/{repo} is not UTF-8 text") from None

    async def get_permission(self, *, owner: str, repo: str, username: str) -> str:
        """`username`'s permission on the repository: admin, write, read or none."""
        async with _translated_errors():
            response = await self._github.rest.repos.async_get_collaborator_permission_level(
                owner, repo, username
            )
        return response.json()["permission"]

    async def team_member(self, *, org: str, team_slug: str, username: str) -> bool:
        """Whether `username` is an active member of the team `@org/team_slug`."""
        try:
            async with _translated_errors():
                response = await self._github.rest.teams.async_get_membership_for_user_in_org(
                    org, team_slug, username
                )
        except GitHubNotFound:
            return False
        return response.json().get("state") == "active"

    async def create_deployment(
        self,
        *,
        owner: str,
        repo: str,
        ref: str,
        environment: str,
        payload: Mapping[str, Any],
        task: str = "deploy",
        description: str | None = None,
        auto_merge: bool = False,
        required_contexts: Sequence[str] = (),
    ) -> Deployment:
        """Create a GitHub Deployment. `required_contexts=()` skips GitHub's own status
        check (the bot checks commit status itself); `auto_merge=False` because GitHub's
        default merges the default branch into `ref` instead of deploying it."""
        body: dict[str, Any] = {
            "ref": ref,
            "environment": environment,
            "payload": dict(payload),
            "task": task,
            "auto_merge": auto_merge,
            "required_contexts": list(required_contexts),
        }
        if description is not None:
            body["description"] = description
        async with _translated_errors():
            response = await self._github.rest.repos.async_create_deployment(owner, repo, data=body)
        if response.status_code == 202:
            # GitHub merged the default branch into `ref` instead of deploying.
            message = response.json().get("message", "GitHub merged instead of deploying")
            raise GitHubError(f"no deployment of {ref}: {message}", status=202)
        return _deployment(response.json())

    async def list_deployments(
        self, *, owner: str, repo: str, environment: str | None = None, sha: str | None = None
    ) -> list[Deployment]:
        """The repository's deployments, newest first (GitHub's first 100)."""
        filters = {
            key: value
            for key, value in (("environment", environment), ("sha", sha))
            if value is not None
        }
        async with _translated_errors():
            response = await self._github.rest.repos.async_list_deployments(
                owner, repo, per_page=100, **filters
            )
        return [_deployment(item) for item in response.json()]

    async def create_deployment_status(
        self,
        *,
        owner: str,
        repo: str,
        deployment_id: int,
        state: DeploymentState,
        description: str | None = None,
        environment_url: str | None = None,
        log_url: str | None = None,
        environment: str | None = None,
        auto_inactive: bool | None = None,
    ) -> DeploymentStatus:
        """Report a deployment's state; descriptions are cut to GitHub's 140 characters."""
        body: dict[str, Any] = {"state": state}
        if description is not None:
            body["description"] = _shorten(description, MAX_STATUS_DESCRIPTION)
        for key, value in (
            ("environment_url", environment_url),
            ("log_url", log_url),
            ("environment", environment),
            ("auto_inactive", auto_inactive),
        ):
            if value is not None:
                body[key] = value
        async with _translated_errors():
            response = await self._github.rest.repos.async_create_deployment_status(
                owner, repo, deployment_id, data=body
            )
        return _deployment_status(response.json())

    async def list_deployment_statuses(
        self, *, owner: str, repo: str, deployment_id: int
    ) -> list[DeploymentStatus]:
        """A deployment's statuses, newest first."""
        async with _translated_errors():
            response = await self._github.rest.repos.async_list_deployment_statuses(
                owner, repo, deployment_id, per_page=100
            )
        return [_deployment_status(item) for item in response.json()]

    async def create_issue_comment(
        self, *, owner: str, repo: str, issue_number: int, body: str
    ) -> int:
        """Comment on an issue or pull request; returns the comment's id."""
        async with _translated_errors():
            response = await self._github.rest.issues.async_create_comment(
                owner, repo, issue_number, data={"body": body}
            )
        return response.json()["id"]

    async def list_issue_comments(
        self,
        *,
        owner: str,
        repo: str,
        issue_number: int,
        since: datetime | None = None,
        page: int = 1,
        per_page: int = 100,
    ) -> IssueCommentPage:
        """One page of an issue's or pull request's comments, oldest first (`GET
        /repos/{owner}/{repo}/issues/{issue_number}/comments`); `since`: only those updated
        at or after it. GitHub pages this list by number, named in the Link header's
        `rel="next"` URL; pass `next_page` back for the next page."""
        options: dict[str, Any] = {}
        if since is not None:
            # githubkit hands a datetime to httpx as is, which writes it with a space and an
            # offset; GitHub reads only ISO 8601 (YYYY-MM-DDTHH:MM:SSZ).
            options["since"] = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        async with _translated_errors():
            response = await self._github.rest.issues.async_list_comments(
                owner, repo, issue_number, per_page=per_page, page=page, **options
            )
        following = response.raw_response.links.get("next", {}).get("url")
        number = httpx.URL(following).params.get("page", "") if following else ""
        comments = tuple(_issue_comment(item) for item in response.json())
        return IssueCommentPage(
            comments=comments, next_page=int(number) if number.isdigit() else None
        )

    async def add_reaction(
        self, *, owner: str, repo: str, comment_id: int, content: str = "eyes"
    ) -> None:
        """React to an issue comment (GitHub answers 200 if the reaction already exists)."""
        async with _translated_errors():
            await self._github.rest.reactions.async_create_for_issue_comment(
                owner, repo, comment_id, data={"content": content}
            )

    async def get_commit(self, *, owner: str, repo: str, ref: str) -> Commit:
        """The commit a branch, tag or (short) sha names; GitHubValidationFailed when none."""
        async with _translated_errors():
            data = (await self._github.rest.repos.async_get_commit(owner, repo, ref)).json()
        return Commit(
            sha=data["sha"],
            message=(data.get("commit") or {}).get("message") or "",
            author_login=(data.get("author") or {}).get("login"),
            html_url=data.get("html_url") or "",
        )

    async def compare(self, *, owner: str, repo: str, base: str, head: str) -> str:
        """How `head` relates to `base`: `ahead` (head contains base), `behind`, `identical`
        or `diverged`."""
        async with _translated_errors():
            response = await self._github.rest.repos.async_compare_commits(
                owner, repo, f"{base}...{head}", per_page=1
            )
        return str(response.json().get("status") or "diverged")

    async def get_combined_status(self, *, owner: str, repo: str, ref: str) -> CombinedStatus:
        """The latest status of each context on `ref` (a sha, branch or tag), every page."""
        statuses: list[CommitStatus] = []
        state, sha = "pending", ref
        for page in range(1, MAX_PAGES + 1):
            async with _translated_errors():
                response = await self._github.rest.repos.async_get_combined_status_for_ref(
                    owner, repo, ref, per_page=100, page=page
                )
            data = response.json()
            state, sha = data.get("state") or state, data.get("sha") or sha
            items = data.get("statuses") or []
            statuses.extend(
                CommitStatus(
                    context=item["context"],
                    state=item["state"],
                    description=item.get("description"),
                    target_url=item.get("target_url"),
                )
                for item in items
            )
            if len(items) < 100 or len(statuses) >= int(data.get("total_count") or 0):
                break
        return CombinedStatus(sha=sha, state=state, statuses=tuple(statuses))

    async def list_check_runs(self, *, owner: str, repo: str, ref: str) -> list[CheckRun]:
        """The latest check runs on `ref` (a sha, branch or tag), every page."""
        runs: list[CheckRun] = []
        for page in range(1, MAX_PAGES + 1):
            async with _translated_errors():
                response = await self._github.rest.checks.async_list_for_ref(
                    owner, repo, ref, filter_="latest", per_page=100, page=page
                )
            data = response.json()
            items = data.get("check_runs") or []
            runs.extend(
                CheckRun(
                    id=item["id"],
                    name=item["name"],
                    status=item["status"],
                    conclusion=item.get("conclusion"),
                    html_url=item.get("html_url"),
                )
                for item in items
            )
            if len(items) < 100 or len(runs) >= int(data.get("total_count") or 0):
                break
        return runs

    async def get_pull(self, *, owner: str, repo: str, number: int) -> PullRequest:
        async with _translated_errors():
            data = (await self._github.rest.pulls.async_get(owner, repo, number)).json()
        return PullRequest(
            number=data["number"],
            title=data["title"],
            state=data["state"],
            merged=bool(data.get("merged")),
            head_sha=data["head"]["sha"],
            head_ref=data["head"]["ref"],
            base_ref=data["base"]["ref"],
            user_login=(data.get("user") or {}).get("login", ""),
            html_url=data["html_url"],
        )

    async def review_protection_rule(
        self,
        *,
        owner: str,
        repo: str,
        run_id: int,
        environment_name: str,
        state: Literal["approved", "rejected"],
        comment: str,
    ) -> None:
        """Approve or reject a workflow run waiting on the App's deployment protection rule."""
        async with _translated_errors():
            await self._github.rest.actions.async_review_custom_gates_for_run(
                owner,
                repo,
                run_id,
                data={"environment_name": environment_name, "state": state, "comment": comment},
            )


# --- retries and errors ------------------------------------------------------------------


class _BoundedRetry:
    """githubkit's own decisions (rate limits, then 5xx), with bounded, scalable waits."""

    def __init__(self, *, max_retries: int, max_wait: float, scale: float) -> None:
        self._decide = RetryChainDecision(
            RetryRateLimit(max_retry=max_retries), RetryServerError(max_retry=max_retries)
        )
        self._max_wait = max_wait
        self._scale = scale

    def __call__(self, exc: GitHubException, retry_count: int) -> RetryOption:
        cause = _cause(exc)
        option = self._decide(cause, retry_count)
        if not option.do_retry or _must_not_repeat(cause):
            return RetryOption(False)
        asked = option.retry_after.total_seconds() if option.retry_after is not None else 60.0
        wait = asked * self._scale
        if wait > self._max_wait:
            return RetryOption(False)
        # githubkit sleeps 60 s when told to wait a falsy timedelta, zero included.
        return RetryOption(True, timedelta(seconds=max(wait, 0.001)))


def _must_not_repeat(exc: GitHubException) -> bool:
    """A 5xx to a POST or PATCH may still have taken effect (GitHub can create a deployment
    and answer 502): sending it again could deploy twice, so the caller, who can look the
    result up first, decides. Rate-limit refusals took no effect and are always retried;
    so is the installation-token exchange, which has no effect worth guarding."""
    if not isinstance(exc, RequestFailed) or isinstance(exc, RateLimitExceeded):
        return False
    request = exc.request
    if request.method in {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}:
        return False
    return not request.url.path.endswith("/access_tokens")


def _cause(exc: GitHubException) -> GitHubException:
    """The real failure: githubkit wraps errors raised while fetching an installation token
    (inside httpx's auth flow) in a plain `RequestError`."""
    while type(exc) is RequestError and isinstance(exc.exc, GitHubException):
        exc = exc.exc
    return exc


@asynccontextmanager
async def _translated_errors() -> AsyncIterator[None]:
    # `from None`: the chained originals hold requests whose headers carry the token.
    try:
        yield
    except GitHubException as exc:
        raise _translate(_cause(exc)) from None
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors()
        )
        raise GitHubValidationFailed(f"request not sent, invalid body: {problems}") from None


def _translate(exc: GitHubException) -> GitHubError:
    if isinstance(exc, RequestFailed):
        status = exc.response.status_code
        request = exc.request
        where = f"{request.method} {request.url.path}"
        message = f"GitHub answered {status} to {where}: {_github_message(exc.response)}"
        if isinstance(exc, RateLimitExceeded):
            return GitHubRateLimited(
                message, status=status, retry_after=exc.retry_after.total_seconds()
            )
        if status == 404:
            return GitHubNotFound(message, status=status)
        if status in (401, 403):
            return GitHubPermissionDenied(message, status=status)
        if status == 422:
            return GitHubValidationFailed(message, status=status)
        if status >= 500:
            return GitHubServerError(message, status=status)
        return GitHubError(message, status=status)
    if isinstance(exc, RequestTimeout):
        request = exc.request
        return GitHubUnavailable(
            f"GitHub did not answer {request.method} {request.url.path} in time"
        )
    if isinstance(exc, RequestError) and isinstance(exc.exc, httpx.TransportError):
        return GitHubUnavailable(f"could not reach GitHub: {type(exc.exc).__name__}")
    if isinstance(exc, RequestError) and isinstance(exc.exc, jwt.PyJWTError | ValueError):
        # The original text is left out in case it quotes the key.
        return GitHubPermissionDenied(
            f"could not sign the App's JWT with its private key ({type(exc.exc).__name__})"
        )
    if isinstance(exc, RequestError):
        return GitHubError(f"could not call GitHub: {type(exc.exc).__name__}")
    return GitHubError(f"could not call GitHub: {type(exc).__name__}")


def _github_message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "no details"
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"].splitlines()[0] if body["message"] else "no details"
    return "no details"


def _deployment(data: Mapping[str, Any]) -> Deployment:
    payload = data.get("payload") or {}
    if isinstance(payload, str):
        # GitHub stores a string payload as given; the bot always sends an object.
        try:
            payload = json.loads(payload)
        except ValueError:
            payload = {}
    return Deployment(
        id=data["id"],
        sha=data["sha"],
        ref=data["ref"],
        environment=data.get("environment") or "",
        payload=payload if isinstance(payload, dict) else {},
        task=data.get("task") or "deploy",
        description=data.get("description"),
        created_at=_datetime(data.get("created_at")),
    )


def _deployment_status(data: Mapping[str, Any]) -> DeploymentStatus:
    return DeploymentStatus(
        id=data["id"],
        state=data["state"],
        description=data.get("description") or "",
        environment=data.get("environment"),
        environment_url=data.get("environment_url") or None,
        log_url=data.get("log_url") or data.get("target_url") or None,
        created_at=_datetime(data.get("created_at")),
    )


def _hook_delivery(data: Mapping[str, Any]) -> HookDelivery:
    return HookDelivery(
        id=data["id"],
        guid=data["guid"],
        delivered_at=datetime.fromisoformat(data["delivered_at"]),
        redelivery=bool(data.get("redelivery")),
        status=data.get("status") or "",
        status_code=data.get("status_code"),
        event=data.get("event") or "",
        action=data.get("action"),
        installation_id=data.get("installation_id"),
        repository_id=data.get("repository_id"),
    )


def _issue_comment(data: Mapping[str, Any]) -> IssueComment:
    return IssueComment(id=data["id"], body=data.get("body") or "")


def _datetime(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
