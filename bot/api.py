"""The REST API (CONTRACT §7) under `/api/v1`: deploy status of a commit, the list of
deployments, and rollbacks, for scripts and CI jobs.

Every route needs `Authorization: Bearer <token>`: the static `DEPLOYBOT_API_TOKEN`, which
sees and does everything, or a GitHub Actions OIDC token (audience `DEPLOYBOT_OIDC_AUDIENCE`),
which is held to the repository its workflow runs in. Errors are `{"detail": "..."}` like
FastAPI's own 422s. A deployment here is a rollout: one commit in one environment (its
GitHub deployment, once created, is `deployment_id`).

Decisions the contract leaves open:
- Repositories match case-insensitively (GitHub's names do) and answers use the stored
  spelling. Environments match case-insensitively, as in commands.
- A commit may be abbreviated to 7 or more hex digits; an abbreviation that matches more
  than one known commit is a 400 naming the candidates.
- `GET /deployments` returns a JSON array (newest first, like GitHub's own list); every
  filter is optional, an unknown repository gives an empty list.
- Callers with the static token act as the GitHub identity `api` (a name GitHub reserves, so
  it can never be a real person's): the thread says "api is rolling `production` back ...".
  An OIDC caller acts as the workflow run's `actor` (else the token's `sub`).
- An OIDC caller naming another repository gets 403, whether deploybot knows that
  repository or not (so a token learns nothing about others); leaving `repository` out of
  `/deployments` or `/audit` lists its own repository only.
- A failure to fetch the issuer's keys is a 503 (with `Retry-After`), not a 401: the token
  may be fine, deploybot could not check it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import sqlalchemy as sa
import structlog
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot import conductor
from bot.pipeline.config import PipelineError, parse_pipeline
from bot.pipeline.models import Kind, Person, Rollout, Status
from bot.settings import Settings
from integrations.oidc import KeysUnavailable, NotAToken, OIDCVerifier, TokenRejected
from storage import audit, db
from storage.models import Release as ReleaseRow
from storage.models import Rollout as RolloutRow
from storage.models import utcnow

log = structlog.get_logger(__name__)

PREFIX = "/api/v1"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_AUDIT = 10_000  # entries in one export; page with `since`
REPOSITORY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$"
COMMIT_PATTERN = r"^[0-9a-fA-F]{7,40}$"

API_PERSON = Person(github="api")

OIDC_HINT = "a GitHub Actions OIDC token (`permissions: id-token: write`, audience `{audience}`)"
BEARER_MISSING = (
    "Send `Authorization: Bearer <token>` with the token in DEPLOYBOT_API_TOKEN or {oidc}."
)
OIDC_ONLY = (
    "DEPLOYBOT_API_TOKEN is not set on the server, so the REST API takes only OIDC tokens: "
    "send `Authorization: Bearer <token>` with {oidc}."
)
BEARER_MISMATCH = (
    "The bearer token is neither the one in DEPLOYBOT_API_TOKEN nor an OIDC token (a JWT)."
)
NOT_OIDC = (
    "The bearer token is not an OIDC token (a JWT), and DEPLOYBOT_API_TOKEN is not set on "
    "the server, so only OIDC tokens are accepted."
)
OIDC_REFUSED = "The OIDC token was refused: {reason}."
OIDC_UNAVAILABLE = (
    "deploybot cannot check OIDC tokens right now ({reason}); try again shortly, or use "
    "DEPLOYBOT_API_TOKEN."
)
OTHER_REPOSITORY = "This OIDC token is for {own}: it may see and act on {own} only, not {asked}."
KEYS_RETRY_AFTER = "30"


# --- models ----------------------------------------------------------------------------


class ErrorPublic(BaseModel):
    """Why a request was refused."""

    detail: str


class PersonPublic(BaseModel):
    """Who asked: a GitHub login, a Slack user id, or both (`api` for API callers)."""

    github: str | None = None
    slack: str | None = None


class RolloutPublic(BaseModel):
    """One deployment: a commit in an environment, and where it stands."""

    id: int
    repository: str
    environment: str
    commit_sha: str
    status: Status
    kind: Kind = Field(description="`deploy`, or `rollback` to an earlier commit")
    deployment_id: int | None = Field(
        description="the GitHub deployment's id; null until it has been created"
    )
    replaces: int | None = Field(None, description="a rollback: the deployment it undoes")
    requested_by: PersonPublic
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: RolloutRow) -> RolloutPublic:
        assert row.id is not None
        return cls(
            id=row.id,
            repository=row.repository,
            environment=row.environment,
            commit_sha=row.commit_sha,
            status=Status(row.status),
            kind=Kind(row.kind),
            deployment_id=row.github_deployment_id,
            replaces=row.replaces,
            requested_by=PersonPublic(github=row.requested_by_github, slack=row.requested_by_slack),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class EnvironmentStatusPublic(BaseModel):
    """A commit in one environment: its newest deployment there, or nulls if it has none."""

    name: str
    status: Status | None = Field(description="null: this commit was never deployed here")
    deployment_id: int | None
    url: str | None = Field(
        description="the environment's deployments on GitHub, once this commit has one there"
    )
    updated_at: datetime | None


class DeployStatusPublic(BaseModel):
    """Where a commit stands in every environment of its repository's pipeline."""

    repository: str
    commit_sha: str
    status: Status | None = Field(
        description="the status in the furthest environment (in promotion order) the commit "
        "was deployed to; null when it was deployed nowhere"
    )
    environments: list[EnvironmentStatusPublic]


class RollbackRequest(BaseModel):
    """Roll an environment back to the commit that succeeded there before the current one."""

    model_config = ConfigDict(extra="forbid")

    repository: str = Field(pattern=REPOSITORY_PATTERN, examples=["acme/api"])
    environment: str = Field(min_length=1, max_length=100, examples=["production"])
    target_commit: str | None = Field(
        None,
        pattern=COMMIT_PATTERN,
        description="optional check: the commit you expect the rollback to go to (7+ hex "
        "digits); refused with 409 when the rollback would go elsewhere",
    )


# --- authentication ----------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who is calling, as the pipeline knows them. `repository` is set for an OIDC caller:
    the one repository it may see and act on (None: the static token, everything)."""

    person: Person
    repository: str | None = None

    def may_see(self, repository: str) -> bool:
        return self.repository is None or self.repository.lower() == repository.lower()

    def check(self, repository: str) -> None:
        """403 unless the caller may see and act on `repository`."""
        if not self.may_see(repository):
            raise HTTPException(403, OTHER_REPOSITORY.format(own=self.repository, asked=repository))

    def scope(self, repository: str | None) -> str | None:
        """The repository a listing is limited to: the one asked for (checked), else an OIDC
        caller's own."""
        if repository is None:
            return self.repository
        self.check(repository)
        return repository


_BEARER = HTTPBearer(
    auto_error=False, description="DEPLOYBOT_API_TOKEN, or a GitHub Actions OIDC token"
)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def authenticator(token: SecretStr | None, oidc: OIDCVerifier) -> Callable[..., Awaitable[Caller]]:
    """The dependency that admits a request or answers 401 (503 when OIDC keys cannot be
    fetched).

    A bearer equal to the static token (compared in constant time) is the full-access
    `api` caller; any other bearer is tried as an OIDC JWT from `oidc`'s issuer, and
    becomes a caller held to the token's `repository`.
    """
    expected = token.get_secret_value().encode() if token is not None else None
    oidc_hint = OIDC_HINT.format(audience=oidc.audience)

    async def authenticate(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> Caller:
        if credentials is None:
            missing = BEARER_MISSING if expected is not None else OIDC_ONLY
            raise _unauthorized(missing.format(oidc=oidc_hint))
        given = credentials.credentials
        if expected is not None and hmac.compare_digest(given.encode(), expected):
            return Caller(person=API_PERSON)
        try:
            claims = await oidc.verify(given)
        except NotAToken:
            raise _unauthorized(BEARER_MISMATCH if expected is not None else NOT_OIDC) from None
        except TokenRejected as exc:
            raise _unauthorized(OIDC_REFUSED.format(reason=exc.reason)) from None
        except KeysUnavailable as exc:
            raise HTTPException(
                503,
                OIDC_UNAVAILABLE.format(reason=exc.reason),
                headers={"Retry-After": KEYS_RETRY_AFTER},
            ) from None
        person = Person(github=claims.actor or claims.subject)
        return Caller(person=person, repository=claims.repository)

    return authenticate


# --- routes ------------------------------------------------------------------------------

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorPublic, "description": "missing or wrong bearer token"},
    403: {"model": ErrorPublic, "description": "an OIDC token naming another repository"},
    503: {"model": ErrorPublic, "description": "the OIDC issuer's keys cannot be fetched"},
}


def api_router(
    *,
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    on_change: Callable[[], None],
    oidc: OIDCVerifier | None = None,
) -> APIRouter:
    """The `/api/v1` routes. `sessions` write (rollbacks); reads get sessions of their own
    that start deferred on SQLite, so they never queue for the write lock. `on_change` wakes
    the outbox dispatcher. `oidc` verifies OIDC bearer tokens (default: one for the
    settings' issuer and audience)."""
    if oidc is None:
        oidc = OIDCVerifier(
            issuer=settings.deploybot_oidc_issuer, audience=settings.deploybot_oidc_audience
        )
    authenticate = authenticator(settings.deploybot_api_token, oidc)
    readers = db.read_sessions(engine)
    web = github_web_url(settings.github_api_url)
    router = APIRouter(
        prefix=PREFIX, tags=["deploys"], dependencies=[Depends(authenticate)], responses=_ERRORS
    )

    @router.get(
        "/deploy/status",
        response_model=DeployStatusPublic,
        responses={
            400: {"model": ErrorPublic, "description": "ambiguous commit abbreviation"},
            404: {"model": ErrorPublic, "description": "unknown repository or commit"},
        },
    )
    async def deploy_status(
        repository: Annotated[
            str, Query(pattern=REPOSITORY_PATTERN, description="owner/repo", examples=["acme/api"])
        ],
        commit: Annotated[
            str, Query(pattern=COMMIT_PATTERN, description="the commit sha, or 7+ of its digits")
        ],
        caller: Caller = Depends(authenticate),
    ) -> DeployStatusPublic:
        """Where a commit stands in each environment of the repository's pipeline.

        Environments are those of the pipeline file as last read from the default branch
        (then any others the commit was deployed to); each shows the commit's newest
        deployment there, or `status: null` if it was never deployed there. The top-level
        `status` is the status in the furthest environment reached (null: none).
        """
        caller.check(repository)
        async with readers() as session:
            name = await _known_repository(session, repository)
            sha = await _resolve_commit(session, repository=name, prefix=commit.lower())
            newest: dict[str, RolloutRow] = {}
            for row in await _rollouts_of_commit(session, repository=name, commit_sha=sha):
                newest[row.environment.lower()] = row
            order = await _environment_order(session, repository=name)
        for key, row in newest.items():
            if key not in {n.lower() for n in order}:
                order.append(row.environment)
        entries = [_environment_entry(env, newest.get(env.lower()), name, web) for env in order]
        reached = [e.status for e in entries if e.status is not None]
        return DeployStatusPublic(
            repository=name,
            commit_sha=sha,
            status=reached[-1] if reached else None,
            environments=entries,
        )

    @router.get("/deployments", response_model=list[RolloutPublic])
    async def deployments(
        repository: Annotated[
            str | None, Query(pattern=REPOSITORY_PATTERN, description="owner/repo")
        ] = None,
        environment: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
        status: Status | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        caller: Caller = Depends(authenticate),
    ) -> list[RolloutPublic]:
        """Deployments (rollouts and rollbacks), newest first; every filter is optional (an
        OIDC caller sees its own repository's only)."""
        repository = caller.scope(repository)
        async with readers() as session:
            statement = sa.select(RolloutRow).order_by(RolloutRow.id.desc()).limit(limit)
            if repository is not None:
                name = await _repository_named(session, repository)
                if name is None:
                    return []
                statement = statement.where(RolloutRow.repository == name)
            if environment is not None:
                statement = statement.where(
                    sa.func.lower(RolloutRow.environment) == environment.lower()
                )
            if status is not None:
                statement = statement.where(RolloutRow.status == status.value)
            rows = (await session.execute(statement)).scalars().all()
        return [RolloutPublic.from_row(row) for row in rows]

    @router.post(
        "/rollback",
        status_code=202,
        response_model=RolloutPublic,
        responses={
            404: {"model": ErrorPublic, "description": "unknown repository"},
            409: {"model": ErrorPublic, "description": "the rollback was refused, and why"},
        },
    )
    async def rollback(
        request: RollbackRequest,
        # A default, not Annotated: the annotation is a string and `authenticate` is local.
        caller: Caller = Depends(authenticate),
    ) -> RolloutPublic:
        """Roll an environment back to the commit that succeeded there before the current
        one, as `/rollback <env>` does. Answers 202 with the new deployment (`pending`; its
        GitHub deployment is created right after, so `deployment_id` is still null). An OIDC
        caller may roll back its own repository only."""
        caller.check(request.repository)
        async with sessions.begin() as session:
            name = await _known_repository(session, request.repository)
            try:
                outcome, _ = await conductor.rollback(
                    session,
                    source="api",
                    repository=name,
                    environment=request.environment,
                    requester=caller.person,
                    now=utcnow(),
                )
            except PipelineError as exc:
                raise HTTPException(409, f"The pipeline file is invalid:\n{exc}") from None
            refusal = outcome.refusal
            if refusal is None:
                new = next(r for r in reversed(outcome.rollouts) if r.kind is Kind.ROLLBACK)
                answer = await _rolled_back(session, new, request.target_commit)
        if refusal is not None:
            raise HTTPException(409, refusal)  # after the commit: the refusal is audited
        log.info(
            "rollback requested through the API",
            repository=name,
            environment=answer.environment,
            commit=answer.commit_sha,
            rollout=answer.id,
        )
        on_change()
        return answer

    @router.get(
        "/audit",
        response_class=PlainTextResponse,
        responses={200: {"content": {"application/x-ndjson": {}}}},
    )
    async def audit_log(
        since: Annotated[
            datetime | None, Query(description="ISO 8601; entries at or after it")
        ] = None,
        repository: Annotated[
            str | None, Query(pattern=REPOSITORY_PATTERN, description="owner/repo")
        ] = None,
        after: Annotated[int | None, Query(ge=0, description="the last entry id seen")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_AUDIT)] = MAX_AUDIT,
        caller: Caller = Depends(authenticate),
    ) -> PlainTextResponse:
        """The audit log as JSON lines in the order written (page on with `after`, the last
        line's `id`): who did what, when, from where
        (`slack`, `github`, `api`, `scheduler`), to which repository, environment and commit,
        and what came of it (refusals and `--force` overrides included). An OIDC caller sees
        its own repository's entries only."""
        repository = caller.scope(repository)
        if since is not None:
            try:
                since = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
            except OverflowError:
                raise HTTPException(422, "`since` is out of range") from None
        async with readers() as session:
            found = await audit.entries(
                session, since=since, repository=repository, after=after, limit=limit
            )
        text = "".join(json.dumps(audit.as_json(entry)) + "\n" for entry in found)
        return PlainTextResponse(text, media_type="application/x-ndjson")

    return router


async def _rolled_back(
    session: AsyncSession, new: Rollout, target_commit: str | None
) -> RolloutPublic:
    """The new rollback, checked against the commit the caller expected (raising undoes it
    with the rest of the transaction)."""
    if target_commit is not None:
        await _check_target(session, rollback=new, prefix=target_commit.lower())
    row = await session.get(RolloutRow, new.id)
    assert row is not None
    return RolloutPublic.from_row(row)


def github_web_url(api_url: str) -> str | None:
    """GitHub's web address for its REST base (github.com, or a GitHub Enterprise Server);
    None when it cannot be told (an emulator), so no link is made up."""
    parts = urlsplit(api_url.rstrip("/"))
    if parts.netloc.lower() == "api.github.com":
        return "https://github.com"
    if parts.path.endswith("/api/v3"):
        return f"{parts.scheme}://{parts.netloc}{parts.path.removesuffix('/api/v3')}"
    return None


def _environment_entry(
    environment: str, row: RolloutRow | None, repository: str, web: str | None
) -> EnvironmentStatusPublic:
    if row is None:
        return EnvironmentStatusPublic(
            name=environment, status=None, deployment_id=None, url=None, updated_at=None
        )
    url = None
    if web is not None and row.github_deployment_id is not None:
        url = f"{web}/{repository}/deployments/{quote(row.environment, safe='')}"
    return EnvironmentStatusPublic(
        name=environment,
        status=Status(row.status),
        deployment_id=row.github_deployment_id,
        url=url,
        updated_at=row.updated_at,
    )


# --- queries -----------------------------------------------------------------------------


async def _repository_named(session: AsyncSession, given: str) -> str | None:
    """The stored spelling of a repository deploybot has releases of."""
    result = await session.execute(
        sa.select(ReleaseRow.repository)
        .where(sa.func.lower(ReleaseRow.repository) == given.lower())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def _known_repository(session: AsyncSession, given: str) -> str:
    name = await _repository_named(session, given)
    if name is None:
        raise HTTPException(
            404,
            f"deploybot has no record of {given}: no pull request or deploy of it has reached "
            "the bot. Is the GitHub App installed on it?",
        )
    return name


async def _commits_like(
    session: AsyncSession, *, repository: str, prefix: str, succeeded_in: str | None = None
) -> list[str]:
    """Known commits of the repository starting with `prefix` (hex only: safe in LIKE)."""
    match = RolloutRow.commit_sha.like(f"{prefix}%")
    statement = sa.select(RolloutRow.commit_sha).where(RolloutRow.repository == repository, match)
    if succeeded_in is not None:
        statement = statement.where(
            sa.func.lower(RolloutRow.environment) == succeeded_in.lower(),
            RolloutRow.status == Status.SUCCESS.value,
        )
    else:
        statement = statement.union(
            sa.select(ReleaseRow.commit_sha).where(
                ReleaseRow.repository == repository, ReleaseRow.commit_sha.like(f"{prefix}%")
            )
        )
    result = await session.execute(statement)
    return sorted(set(result.scalars()))


def _one_commit(found: list[str], prefix: str) -> str:
    if len(found) > 1:
        listed = ", ".join(found[:5])
        raise HTTPException(
            400, f"The abbreviation {prefix} matches {len(found)} commits ({listed}): give more."
        )
    return found[0]


async def _resolve_commit(session: AsyncSession, *, repository: str, prefix: str) -> str:
    found = await _commits_like(session, repository=repository, prefix=prefix)
    if not found:
        raise HTTPException(
            404,
            f"deploybot has no record of commit {prefix} in {repository}: it was never the "
            "head of a pull request the bot saw, nor deployed.",
        )
    return _one_commit(found, prefix)


async def _rollouts_of_commit(
    session: AsyncSession, *, repository: str, commit_sha: str
) -> list[RolloutRow]:
    result = await session.execute(
        sa.select(RolloutRow)
        .where(RolloutRow.repository == repository, RolloutRow.commit_sha == commit_sha)
        .order_by(RolloutRow.id)
    )
    return list(result.scalars())


async def _environment_order(session: AsyncSession, *, repository: str) -> list[str]:
    """The pipeline's environments in promotion order, from the newest release's copy of the
    pipeline file; if that copy is invalid, the environments deployed to, oldest first."""
    pipeline_text = (
        await session.execute(
            sa.select(ReleaseRow.pipeline)
            .where(ReleaseRow.repository == repository)
            .order_by(ReleaseRow.updated_at.desc(), ReleaseRow.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    try:
        return [env.name for env in parse_pipeline(pipeline_text or "").environments]
    except PipelineError:
        pass
    result = await session.execute(
        sa.select(RolloutRow.environment)
        .where(RolloutRow.repository == repository)
        .group_by(RolloutRow.environment)
        .order_by(sa.func.min(RolloutRow.id))
    )
    return list(result.scalars())


async def _check_target(session: AsyncSession, *, rollback: Rollout, prefix: str) -> None:
    """Refuse a `target_commit` that is not the commit the rollback goes to. The conductor
    picks that commit itself (the previous good one), so the target is a check, not a choice."""
    if rollback.commit_sha.startswith(prefix):
        return
    environment, repository = rollback.environment, rollback.repository
    if not await _commits_like(
        session, repository=repository, prefix=prefix, succeeded_in=environment
    ):
        raise HTTPException(
            409,
            f"{prefix} never succeeded in `{environment}` of {repository}; a rollback can "
            "only go to a commit that did.",
        )
    raise HTTPException(
        409,
        f"A rollback of `{environment}` goes to {rollback.commit_sha[:7]}, the commit that "
        f"succeeded there before the current one, not to {prefix[:7]}. Deploy {prefix[:7]} "
        "with `/deploy` instead, or leave out target_commit.",
    )
