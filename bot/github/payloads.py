"""The few fields deploybot reads from GitHub's webhook payloads (everything else is ignored).

Each model names only what a handler uses, so GitHub adding fields never breaks a delivery;
a payload missing one of them is `MalformedDelivery`, dead-lettered at once.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.worker import MalformedDelivery


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


Event = TypeVar("Event", bound=Lenient)


def parse(model: type[Event], payload: dict[str, Any]) -> Event:
    """The fields `model` names; a payload without them can never be handled."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise MalformedDelivery(str(exc)) from None


class User(Lenient):
    login: str
    type: str = "User"

    @property
    def is_bot(self) -> bool:
        return self.type == "Bot" or self.login.endswith("[bot]")


class Account(Lenient):
    login: str
    type: str = "Organization"


class InstallationRef(Lenient):
    id: int
    account: Account | None = None

    @property
    def owner(self) -> Account:
        return self.account or Account(login=str(self.id))


class RepositoryRef(Lenient):
    id: int
    full_name: str
    default_branch: str = "main"

    @property
    def owner_and_name(self) -> tuple[str, str]:
        owner, name = self.full_name.split("/", 1)
        return owner, name


class Head(Lenient):
    sha: str
    ref: str = ""


class PullRequest(Lenient):
    number: int
    title: str = ""
    html_url: str | None = None
    state: str = "open"
    merged: bool | None = None
    merge_commit_sha: str | None = None
    user: User | None = None
    head: Head

    @property
    def pr_state(self) -> str:
        if self.merged:
            return "merged"
        return "closed" if self.state == "closed" else "open"


class PullRequestEvent(Lenient):
    action: str
    pull_request: PullRequest
    repository: RepositoryRef
    installation: InstallationRef | None = None


class Issue(Lenient):
    number: int
    pull_request: dict[str, Any] | None = None


class Comment(Lenient):
    id: int
    body: str = ""
    user: User
    created_at: datetime | None = None


class IssueCommentEvent(Lenient):
    action: str
    issue: Issue
    comment: Comment
    repository: RepositoryRef
    installation: InstallationRef | None = None


class DeploymentRef(Lenient):
    id: int
    sha: str = ""
    environment: str = ""
    payload: dict[str, Any] | str | None = None

    @property
    def rollout_id(self) -> int | None:
        """The rollout deploybot named in the payload when it created this deployment."""
        return self._number("rollout")

    @property
    def canary_step(self) -> int | None:
        """The canary step deploybot named in the payload (None for a plain deploy)."""
        return self._number("step")

    def _number(self, name: str) -> int | None:
        payload = self.payload
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except ValueError:
                return None
        value = payload.get(name) if isinstance(payload, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None


class DeploymentStatusRef(Lenient):
    state: str
    description: str | None = None


class DeploymentStatusEvent(Lenient):
    deployment: DeploymentRef
    deployment_status: DeploymentStatusRef
    repository: RepositoryRef
    installation: InstallationRef | None = None


class InstallationEvent(Lenient):
    action: str
    installation: InstallationRef
    repositories: list[RepositoryRef] | None = None


class InstallationRepositoriesEvent(Lenient):
    action: str
    installation: InstallationRef
    repositories_added: list[RepositoryRef] = []
    repositories_removed: list[RepositoryRef] = []
