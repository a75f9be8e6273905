"""The release story's moving parts for tests: deliveries built from GitHub's own examples,
a health endpoint that can be made to fail, and a way to wait for the app to settle."""

from __future__ import annotations

import copy
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from integrations.emulators.loopback import LoopbackServer
from tests.conftest import CORPORA

EXAMPLES = CORPORA / "github-webhooks" / "payload-examples" / "api.github.com"
OWNER, NAME = "acme", "api"
REPOSITORY = f"{OWNER}/{NAME}"
REPOSITORY_ID = 4_200_000_001
INSTALLATION_ID = 77


def example(path: str) -> dict[str, Any]:
    """One of octokit's example deliveries (a fresh copy to change)."""
    return copy.deepcopy(json.loads((EXAMPLES / path).read_text()))


def _ours(payload: dict[str, Any]) -> dict[str, Any]:
    repository = payload["repository"]
    repository.update(id=REPOSITORY_ID, name=NAME, full_name=REPOSITORY, default_branch="main")
    repository["owner"]["login"] = OWNER
    payload["installation"] = {"id": INSTALLATION_ID, "node_id": "MDIz"}
    return payload


def installation_created() -> dict[str, Any]:
    payload = example("installation/created.payload.json")
    payload["installation"]["id"] = INSTALLATION_ID
    payload["installation"]["account"]["login"] = OWNER
    payload["repositories"] = [
        {"id": REPOSITORY_ID, "name": NAME, "full_name": REPOSITORY, "private": False}
    ]
    return payload


def pull_request(action: str, *, number: int, sha: str, title: str, author: str) -> dict[str, Any]:
    payload = _ours(example("pull_request/opened.payload.json"))
    payload["action"] = action
    payload["number"] = number
    pr = payload["pull_request"]
    pr.update(number=number, title=title, state="open", merged=False)
    pr["html_url"] = f"https://github.com/{REPOSITORY}/pull/{number}"
    pr["head"].update(sha=sha, ref=f"feature-{number}")
    pr["user"]["login"] = author
    return payload


def comment(body: str, *, number: int, login: str, comment_id: int) -> dict[str, Any]:
    payload = _ours(example("issue_comment/created.with-installation.payload.json"))
    payload["issue"]["number"] = number
    payload["issue"]["pull_request"] = {
        "url": f"https://api.github.com/repos/{REPOSITORY}/pulls/{number}"
    }
    payload["comment"].update(id=comment_id, body=body)
    payload["comment"]["user"].update(login=login, type="User")
    return payload


def deployment_status(deployment_id: int, state: str) -> dict[str, Any]:
    payload = _ours(example("deployment_status/with-installation.payload.json"))
    payload["deployment"]["id"] = deployment_id
    payload["deployment_status"]["state"] = state
    return payload


class HealthEndpoint(LoopbackServer):
    """`GET /healthz` answering 200 until `failing` is set, then 503."""

    def __init__(self) -> None:
        self.failing = False
        self.hits = 0
        super().__init__(Starlette(routes=[Route("/healthz", self._health)]), thread_name="health")

    async def _health(self, _request: Request) -> PlainTextResponse:
        self.hits += 1
        if self.failing:
            return PlainTextResponse("database unreachable", status_code=503)
        return PlainTextResponse("ok")

    @property
    def url(self) -> str:
        return f"{self.base_url}/healthz"


def pipeline_file(*, channel: str, health_url: str) -> str:
    return f"""
slack:
  channel: {channel}
users:
  alice: U0ALICE
  bob: U0BOB
environments:
  - name: stage
    health: {{url: "{health_url}", interval: 1s, soak: 2s, failures: 2}}
  - name: production
    approvals: 1
    approvers: [bob, carol]
    health: {{url: "{health_url}", interval: 1s, soak: 2s, failures: 2}}
"""
