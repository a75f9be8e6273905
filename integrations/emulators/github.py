"""A GitHub REST emulator: a real HTTP server on loopback, driven by GitHub's own OpenAPI text.

It routes every operation of `github-rest/openapi-subset.json` (the shared corpora), checks
each request body against the operation's schema, authenticates like a GitHub App
(JWT for `/app...`, installation tokens elsewhere) and answers with the documented example.
A little state keeps the bot's later reads coherent: deployments and their statuses,
files, collaborator permissions, issue comments and the App's webhook deliveries. The
corpus lacks some operations the bot calls (the App's webhook deliveries, listing an issue's
comments): `github-supplement.json` beside this module describes them (hand-written) and is
served the same way. Tests steer it with `fail`, `rate_limit`, `delay` and `respond` (a
fault `taken=True` comes after the call took effect, as when GitHub's answer is lost), and
read what the bot sent from `calls`.

    with GitHubEmulator(app_id=123, app_public_key=public_pem) as gh:
        client = GitHubApp(app_id=123, private_key=private_pem, base_url=gh.url)
"""

from __future__ import annotations

import argparse
import base64
import copy
import functools
import hashlib
import itertools
import json
import os
import re
import secrets
import string
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

import jwt
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from starlette.requests import Request
from starlette.responses import Response

from integrations.emulators.loopback import CORPORA_ENV, LoopbackServer, corpora_dir, take_fault

SPEC_RELATIVE_PATH = Path("github-rest") / "openapi-subset.json"
# Hand-written: operations the bot calls that the corpus subset does not have.
SUPPLEMENT_PATH = Path(__file__).with_name("github-supplement.json")
DOCUMENTATION_URL = "https://docs.github.com/rest"
_SPEC_URI = "urn:deploybot:github-openapi-subset"

# GitHub documents these as "You must use a JWT"; everything else takes an installation token.
APP_JWT_OPERATIONS = frozenset(
    {
        "apps/get-authenticated",
        "apps/create-installation-access-token",
        "apps/get-repo-installation",
        "apps/list-webhook-deliveries",
        "apps/redeliver-webhook-delivery",
    }
)
_SHA = re.compile(r"[0-9a-f]{40}")
# The `since` GitHub reads: YYYY-MM-DDTHH:MM:SSZ (or with an offset, or fractions).
_ISO8601 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_STATUS_STATES = ("error", "failure", "pending", "success")
_PERMISSION_LEVELS = ("none", "read", "triage", "write", "maintain", "admin")
# GitHub redelivers only deliveries of the past three days.
REDELIVERY_WINDOW = timedelta(days=3)


def default_spec_path() -> Path:
    """Where the OpenAPI subset is: `$DEPLOYBOT_CORPORA`, else `<repo>/../shared/corpora`."""
    root = corpora_dir()
    if root is None:
        raise FileNotFoundError(f"no corpora folder beside the project: set {CORPORA_ENV}")
    return root / SPEC_RELATIVE_PATH


# --- what the bot sent -------------------------------------------------------------------


@dataclass
class Call:
    """One request the emulator received (recorded before it is answered)."""

    method: str
    path: str
    operation_id: str | None
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    status: int | None = None


@dataclass
class InvalidRequest:
    """A request whose body failed the operation's `requestBody` schema."""

    call: Call
    errors: list[str]


@dataclass
class _Fault:
    status: int | None
    headers: dict[str, str]
    body: Any
    delay: float
    remaining: int
    taken: bool = False  # answered after the call took effect


@dataclass
class _Override:
    status: int
    body: Any
    headers: dict[str, str]


# --- the OpenAPI description -------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One routed operation of the description, with its documented answer."""

    operation_id: str
    method: str
    template: str
    pattern: re.Pattern[str]
    specificity: tuple[int, int]
    validator: Draft4Validator | None
    body_required: bool
    status: int
    example: Any


class Spec:
    """The OpenAPI subset: routing, request validation and documented examples."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        registry = Registry().with_resource(
            _SPEC_URI, Resource.from_contents(_to_json_schema(document), DRAFT4)
        )
        self.operations: list[Operation] = []
        for template, item in document["paths"].items():
            for method, operation in item.items():
                if method in ("parameters", "summary", "description", "servers"):
                    continue
                self.operations.append(self._operation(template, method, operation, item, registry))

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation for a request: the most specific template wins (`commits/{ref}/status`
        over a multi-segment `commits/{ref}`)."""
        found = [
            (op, m.groupdict())
            for op in self.operations
            if op.method == method and (m := op.pattern.fullmatch(path))
        ]
        if not found:
            return None
        return max(found, key=lambda pair: pair[0].specificity)

    def resolve(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def _operation(
        self,
        template: str,
        method: str,
        operation: dict[str, Any],
        item: dict[str, Any],
        registry: Registry,
    ) -> Operation:
        params = {
            p["name"]: p
            for p in map(
                self.resolve, [*item.get("parameters", []), *operation.get("parameters", [])]
            )
            if p.get("in") == "path"
        }
        regex, multi, literal = "", 0, 0
        for piece in re.split(r"(\{[^}]+\})", template):
            if not (piece.startswith("{") and piece.endswith("}")):
                regex += re.escape(piece)
                literal += len(piece)
                continue
            name = piece[1:-1]
            param = params.get(name, {})
            if param.get("x-multi-segment"):
                regex += f"(?P<{name}>.+)"
                multi += 1
            elif self.resolve(param.get("schema", {})).get("type") == "integer":
                regex += rf"(?P<{name}>\d+)"
            else:
                regex += f"(?P<{name}>[^/]+)"

        validator, body_required = None, False
        body = self.resolve(operation.get("requestBody"))
        if body and "application/json" in body.get("content", {}):
            pointer = "/".join(
                part.replace("~", "~0").replace("/", "~1")
                for part in (
                    "paths",
                    template,
                    method,
                    "requestBody",
                    "content",
                    "application/json",
                    "schema",
                )
            )
            if "$ref" in operation["requestBody"]:
                pointer = operation["requestBody"]["$ref"].removeprefix("#/") + (
                    "/content/application~1json/schema"
                )
            validator = Draft4Validator({"$ref": f"{_SPEC_URI}#/{pointer}"}, registry=registry)
            body_required = bool(body.get("required"))

        status, example = self._documented_answer(operation)
        return Operation(
            operation_id=operation["operationId"],
            method=method.upper(),
            template=template,
            pattern=re.compile(regex),
            specificity=(-multi, literal),
            validator=validator,
            body_required=body_required,
            status=status,
            example=example,
        )

    def _documented_answer(self, operation: dict[str, Any]) -> tuple[int, Any]:
        for code, response in operation.get("responses", {}).items():
            if not code.startswith("2"):
                continue
            content = self.resolve(response).get("content", {}).get("application/json")
            if content is None:
                return int(code), None
            if content.get("examples"):
                value = self.resolve(next(iter(content["examples"].values())))["value"]
            else:
                value = content.get("example")
            value = _with_current_fields(self.complete(copy.deepcopy(value), content["schema"]))
            return int(code), value
        raise ValueError(f"{operation['operationId']} documents no 2xx response")

    def complete(self, value: Any, schema: Any) -> Any:
        """Fill in the required fields an example leaves out (several of GitHub's examples are
        older than their schema: `language` on repositories, `role_name`, team `type`...)."""
        schema = self.resolve(schema)
        for part in schema.get("allOf", []):
            value = self.complete(value, part)
        branches = schema.get("oneOf") or schema.get("anyOf")
        if branches and value is not None:
            value = self.complete(value, self._closest_branch(value, branches))
        if isinstance(value, dict) and "properties" in schema:
            for name in schema.get("required", []):
                if name not in value and name in schema["properties"]:
                    value[name] = self.placeholder(schema["properties"][name])
            for name, sub in schema["properties"].items():
                if name in value:
                    value[name] = self.complete(value[name], sub)
        if isinstance(value, list) and "items" in schema:
            value = [self.complete(item, schema["items"]) for item in value]
        return value

    def placeholder(self, schema: Any) -> Any:
        """A value that satisfies `schema`: its example or default, else null or a zero."""
        schema = self.resolve(schema)
        for key in ("example", "default"):
            if key in schema:
                return self.complete(copy.deepcopy(schema[key]), schema)
        if schema.get("nullable"):
            return None
        if "enum" in schema:
            return schema["enum"][0]
        if schema.get("allOf"):
            return self.complete({}, schema)
        if schema.get("oneOf") or schema.get("anyOf"):
            return self.placeholder((schema.get("oneOf") or schema.get("anyOf"))[0])
        kind = schema.get("type", "object")
        if kind == "string":
            return "1970-01-01T00:00:00Z" if schema.get("format") == "date-time" else ""
        return {"integer": 0, "number": 0, "boolean": False, "array": []}.get(
            kind, self.complete({}, schema) if kind == "object" else None
        )

    def _closest_branch(self, value: Any, branches: list[Any]) -> Any:
        def score(branch: Any) -> int:
            branch = self.resolve(branch)
            if isinstance(value, dict) and "properties" in branch:
                return len(value.keys() & branch["properties"].keys())
            return 0

        return max(branches, key=score)


def _to_json_schema(node: Any, *, names: bool = False) -> Any:
    """OpenAPI 3.0 `nullable` as JSON Schema: jsonschema knows nothing of `nullable`.

    `names`: `node` maps property names to schemas, so no key of it is a keyword.
    """
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    if names:
        return {key: _to_json_schema(value) for key, value in node.items()}
    out = {
        key: value
        if key in ("example", "examples", "default", "enum")
        else _to_json_schema(value, names=key in ("properties", "schemas"))
        for key, value in node.items()
    }
    if out.pop("nullable", False) is True:
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [{"type": "null"}, out]}
    return out


def _with_current_fields(value: Any) -> Any:
    """Fields GitHub returns today that this corpus predates (githubkit requires them)."""
    if isinstance(value, list):
        return [_with_current_fields(item) for item in value]
    if isinstance(value, dict):
        for label in value.get("labels") or []:
            if isinstance(label, dict):
                label.setdefault("archived_by", None)
        return {key: _with_current_fields(item) for key, item in value.items()}
    return value


@functools.cache
def load_spec(path: Path) -> Spec:
    """The parsed description, once per process: it is read-only and costly to prepare."""
    return Spec(json.loads(path.read_text(encoding="utf-8")))


def load_supplement() -> Spec:
    """The hand-written description of what the bot calls and the corpus lacks (the App's
    webhook deliveries, listing an issue's comments), served after the corpus's own
    operations."""
    return load_spec(SUPPLEMENT_PATH)


# --- the emulator ------------------------------------------------------------------------


class GitHubEmulator(LoopbackServer):
    """GitHub's REST API for one App, served on 127.0.0.1 from a background thread.

    `app_public_key` (PEM) makes it verify App JWTs (RS256, `iss` = `app_id`); without it any
    well-formed JWT for `app_id` is accepted. `token_ttl` is how long installation tokens
    live (githubkit refreshes them a minute before they expire). `base_path` serves the API
    below a prefix, as GitHub Enterprise Server does under `/api/v3`.
    """

    def __init__(
        self,
        *,
        app_id: int | str | None = None,
        app_public_key: str | bytes | None = None,
        spec: str | os.PathLike[str] | None = None,
        token_ttl: float = 3600,
        base_path: str = "",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        spec_path = Path(spec) if spec is not None else default_spec_path()
        if spec_path.is_dir():
            spec_path = spec_path / SPEC_RELATIVE_PATH
        self.spec = load_spec(spec_path.resolve())
        self.supplement = load_supplement()
        self.app_id = app_id
        self._public_key = (
            app_public_key.encode() if isinstance(app_public_key, str) else app_public_key
        )
        self.token_ttl = token_ttl
        self.base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        super().__init__(self, host=host, port=port, thread_name="github-emulator")

        self.calls: list[Call] = []
        self.invalid_requests: list[InvalidRequest] = []
        self.issued_tokens: list[str] = []
        self._lock = threading.Lock()
        self._faults: dict[str, list[_Fault]] = {}
        self._overrides: dict[str, _Override] = {}
        self._tokens: dict[str, float] = {}
        self._ids = itertools.count(1)
        self._deployments: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._statuses: dict[int, list[dict[str, Any]]] = {}
        self._files: dict[tuple[str, str, str, str | None], str] = {}
        self._permissions: dict[tuple[str, str, str], str] = {}
        self._refs: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
        self._default_branches: dict[tuple[str, str], str] = {}
        self._parents: dict[tuple[str, str], dict[str, str]] = {}
        # (owner, repo, sha) -> context -> state, and -> name -> (id, status, conclusion)
        self._commit_statuses: dict[tuple[str, str, str], dict[str, str]] = {}
        self._check_runs: dict[tuple[str, str, str], dict[str, tuple[int, str, str | None]]] = {}
        self._hook_deliveries: list[dict[str, Any]] = []
        # (owner, repo, issue number) -> its comments, oldest first
        self._comments: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        # The status code a requested redelivery is listed with; None: not listed (yet).
        self.redelivery_status_code: int | None = 200

    # lifecycle (start, stop, serve_forever, `with`, `async with`): LoopbackServer

    @property
    def url(self) -> str:
        """The API root, `base_path` included; empty while not serving."""
        return self.base_url + self.base_path if self.serving else ""

    # steering

    def calls_to(self, operation_id: str) -> list[Call]:
        """The recorded calls of one operation, e.g. `"repos/create-deployment"`."""
        return [call for call in list(self.calls) if call.operation_id == operation_id]

    @property
    def tokens_issued(self) -> int:
        """How many installation tokens were handed out."""
        return len(self.issued_tokens)

    def fail(
        self,
        operation_id: str,
        *,
        status: int = 502,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
        delay: float = 0.0,
        taken: bool = False,
    ) -> None:
        """Answer the next `times` calls of `operation_id` (`"*"`: any) with `status`.

        The body defaults to GitHub's error shape. `delay` holds the answer that long first.
        `taken`: the call takes effect first (a comment is posted, a deployment created) and
        only its answer fails, as when GitHub answers 502 or a proxy drops the answer.
        """
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = "Error"
        self._add_fault(
            operation_id,
            _Fault(
                status=status,
                headers=dict(headers or {}),
                body=body if body is not None else _error(message, status),
                delay=delay,
                remaining=times,
                taken=taken,
            ),
        )

    def rate_limit(
        self,
        operation_id: str,
        *,
        kind: Literal["primary", "secondary", "429"] = "secondary",
        retry_after: int = 0,
        times: int = 1,
    ) -> None:
        """Refuse the next `times` calls the way GitHub's rate limits do.

        `secondary`: 403 with `retry-after`; `429`: 429 with `retry-after`; `primary`: 403 with
        `x-ratelimit-remaining: 0` and `x-ratelimit-reset` `retry_after` seconds from now.
        """
        if kind == "primary":
            reset = int(time.time()) + retry_after
            headers = {
                "x-ratelimit-limit": "5000",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-used": "5000",
                "x-ratelimit-reset": str(reset),
                "x-ratelimit-resource": "core",
            }
            self.fail(
                operation_id,
                status=403,
                times=times,
                headers=headers,
                body=_error("API rate limit exceeded for installation.", 403),
            )
            return
        message = (
            "You have exceeded a secondary rate limit. Please wait a few minutes before you "
            "try again."
        )
        status = 429 if kind == "429" else 403
        self.fail(
            operation_id,
            status=status,
            times=times,
            headers={"retry-after": str(retry_after)},
            body=_error(message, status),
        )

    def delay(
        self, operation_id: str, seconds: float, *, times: int = 1, taken: bool = False
    ) -> None:
        """Hold the next `times` answers of `operation_id` for `seconds` (client timeouts);
        `taken`: the call takes effect before the wait, so a client that gave up missed it."""
        self._add_fault(operation_id, _Fault(None, {}, None, seconds, times, taken))

    def respond(
        self,
        operation_id: str,
        *,
        status: int = 200,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer every call of `operation_id` with this, until `reset()`."""
        with self._lock:
            self._overrides[operation_id] = _Override(status, body, dict(headers or {}))

    def reset(self) -> None:
        """Forget faults, overrides and recorded calls (state and tokens stay)."""
        with self._lock:
            self._faults.clear()
            self._overrides.clear()
            self.calls.clear()
            self.invalid_requests.clear()

    def set_file(self, owner: str, repo: str, path: str, text: str, ref: str | None = None) -> None:
        """Serve `text` at `path`; `ref=None` is the default branch (also the fallback for
        other refs)."""
        with self._lock:
            self._files[(owner.lower(), repo.lower(), path.strip("/"), ref)] = text

    def set_permission(self, owner: str, repo: str, login: str, permission: str) -> None:
        """`login`'s role on the repository: admin, maintain, write, triage, read or none."""
        if permission not in _PERMISSION_LEVELS:
            raise ValueError(f"unknown permission {permission!r}")
        with self._lock:
            self._permissions[(owner.lower(), repo.lower(), login.lower())] = permission

    def set_ref(
        self,
        owner: str,
        repo: str,
        ref: str,
        sha: str,
        *,
        message: str = "A commit",
        author: str = "octocat",
    ) -> None:
        """Make branch or tag `ref` point at commit `sha` (`repos/get-commit` resolves it).
        Once a repository has refs, a full 40-character sha still resolves and other unknown
        refs answer 422; a repository without any answers the documented example."""
        with self._lock:
            commit = {"sha": sha, "message": message, "author": author}
            refs = self._refs.setdefault((owner.lower(), repo.lower()), {})
            refs[ref] = commit
            refs[sha] = commit

    def set_parent(self, owner: str, repo: str, sha: str, parent: str) -> None:
        """Record that commit `sha` comes right after `parent` (`repos/compare-commits`
        answers from these links; commits without any have no history)."""
        with self._lock:
            self._parents.setdefault((owner.lower(), repo.lower()), {})[sha] = parent

    def set_default_branch(self, owner: str, repo: str, branch: str) -> None:
        """What `repos/get` answers as the repository's default branch."""
        with self._lock:
            self._default_branches[(owner.lower(), repo.lower())] = branch

    def set_status(self, owner: str, repo: str, sha: str, context: str, state: str) -> None:
        """The latest commit status of `context` on `sha`: success, pending, failure or error
        (`repos/get-combined-status-for-ref` answers it). A commit nobody set a status or check
        run on has none, as on GitHub (combined state `pending`, no statuses)."""
        if state not in _STATUS_STATES:
            raise ValueError(f"unknown commit status state {state!r}")
        with self._lock:
            key = (owner.lower(), repo.lower(), sha.lower())
            self._commit_statuses.setdefault(key, {})[context] = state

    def set_check_run(
        self,
        owner: str,
        repo: str,
        sha: str,
        name: str,
        status: str = "completed",
        conclusion: str | None = None,
    ) -> None:
        """The latest check run called `name` on `sha` (`checks/list-for-ref` answers it):
        `status` queued, in_progress, completed...; `conclusion` once completed."""
        if status == "completed" and conclusion is None:
            raise ValueError("a completed check run needs a conclusion")
        with self._lock:
            key = (owner.lower(), repo.lower(), sha.lower())
            runs = self._check_runs.setdefault(key, {})
            runs[name] = (next(self._ids), status, conclusion if status == "completed" else None)

    def deployments(self, owner: str, repo: str) -> list[dict[str, Any]]:
        """The deployments created so far in a repository, newest first."""
        with self._lock:
            return copy.deepcopy(self._deployments.get((owner.lower(), repo.lower()), [])[::-1])

    def add_hook_delivery(
        self,
        *,
        event: str = "issue_comment",
        action: str | None = "created",
        status_code: int = 200,
        delivered_at: datetime | None = None,
        guid: str | None = None,
        redelivery: bool = False,
        installation_id: int | None = 1,
        repository_id: int | None = 1,
    ) -> dict[str, Any]:
        """Record one attempt to deliver a webhook to the App (`status_code` 0: no answer);
        `apps/list-webhook-deliveries` lists it. Returns it, with its `id` and `guid`."""
        with self._lock:
            return self._add_hook_delivery(
                event=event,
                action=action,
                status_code=status_code,
                delivered_at=delivered_at or datetime.now(UTC),
                guid=guid or _guid(),
                redelivery=redelivery,
                installation_id=installation_id,
                repository_id=repository_id,
            )

    def hook_deliveries(self) -> list[dict[str, Any]]:
        """Every delivery attempt, newest first (as GitHub lists them)."""
        with self._lock:
            return copy.deepcopy(self._newest_deliveries())

    def add_comment(
        self, owner: str, repo: str, issue_number: int, body: str, *, at: datetime | None = None
    ) -> dict[str, Any]:
        """Record a comment on an issue or pull request as if posted at `at` (default now), as
        `issues/create-comment` does; `issues/list-comments` lists it. Returns it."""
        params = {"owner": owner, "repo": repo, "issue_number": str(issue_number)}
        (create,) = [o for o in self.spec.operations if o.operation_id == "issues/create-comment"]
        with self._lock:
            return copy.deepcopy(self._add_comment(create, params, body, at or datetime.now(UTC)))

    def comments(self, owner: str, repo: str, issue_number: int) -> list[dict[str, Any]]:
        """The comments of an issue or pull request, oldest first (as GitHub lists them)."""
        with self._lock:
            return copy.deepcopy(
                self._comments.get((owner.lower(), repo.lower(), issue_number), [])
            )

    def _add_hook_delivery(
        self, *, status_code: int, delivered_at: datetime, **fields: Any
    ) -> dict[str, Any]:
        delivery = {
            "id": next(self._ids),
            **fields,
            "delivered_at": _timestamp(delivered_at),
            "duration": 0.27,
            "status": "OK" if 200 <= status_code < 300 else _delivery_failure(status_code),
            "status_code": status_code,
        }
        self._hook_deliveries.append(delivery)
        return copy.deepcopy(delivery)

    def _newest_deliveries(self) -> list[dict[str, Any]]:
        return sorted(
            self._hook_deliveries, key=lambda d: (d["delivered_at"], d["id"]), reverse=True
        )

    def _add_fault(self, operation_id: str, fault: _Fault) -> None:
        with self._lock:
            self._faults.setdefault(operation_id, []).append(fault)

    # serving

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self._handle(request)
        await response(scope, receive, send)

    async def _handle(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            body = _UNPARSABLE
        path = request.url.path
        routed = None
        if path.startswith(self.base_path + "/"):
            path = path[len(self.base_path) :]
            routed = self.spec.match(request.method, path) or self.supplement.match(
                request.method, path
            )
        call = Call(
            method=request.method,
            path=path,
            operation_id=routed[0].operation_id if routed else None,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            json=None if body is _UNPARSABLE else body,
        )
        self.calls.append(call)
        response = await self._answer(call, routed, body)
        call.status = response.status_code
        return response

    async def _answer(
        self, call: Call, routed: tuple[Operation, dict[str, str]] | None, body: Any
    ) -> Response:
        if routed is None:
            return _json(404, _error("Not Found", 404))
        operation, params = routed

        problems = self._body_problems(operation, body)
        if problems:
            self.invalid_requests.append(InvalidRequest(call, problems))

        with self._lock:
            fault = take_fault(self._faults, operation.operation_id)
        if fault is not None and not fault.taken:
            faulted = await self._faulted(fault)
            if faulted is not None:
                return faulted

        refused = self._authenticate(operation, call.headers.get("authorization", ""))
        if refused is not None:
            return refused
        if body is _UNPARSABLE:
            return _json(400, _error("Problems parsing JSON", 400))
        if problems:
            return _json(422, _validation_error(problems))

        with self._lock:
            override = self._overrides.get(operation.operation_id)
        if override is not None:
            answer = _json(override.status, override.body, override.headers)
        else:
            answer = self._from_state(operation, params, call.query, body)
        if fault is not None and fault.taken:
            faulted = await self._faulted(fault)
            if faulted is not None:
                return faulted
        return answer

    async def _faulted(self, fault: _Fault) -> Response | None:
        """A fault's answer; None: it only held the answer back for its delay."""
        if fault.delay and await self.wait_for_stop(fault.delay):
            return _json(503, _error("Service Unavailable", 503))
        if fault.status is not None:
            return _json(fault.status, fault.body, fault.headers)
        return None

    def _body_problems(self, operation: Operation, body: Any) -> list[str]:
        if operation.validator is None or body is _UNPARSABLE:
            return []
        if body is None:
            return ["a request body is required"] if operation.body_required else []
        return [
            f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
            for error in operation.validator.iter_errors(body)
        ]

    # authentication

    def _authenticate(self, operation: Operation, authorization: str) -> Response | None:
        scheme, _, credential = authorization.partition(" ")
        scheme, credential = scheme.lower(), credential.strip()
        if operation.operation_id in APP_JWT_OPERATIONS:
            if scheme != "bearer" or not self._valid_jwt(credential):
                return _json(401, _error("A JSON web token could not be decoded", 401))
            return None
        with self._lock:
            expires = self._tokens.get(credential)
        if scheme not in ("token", "bearer") or expires is None or expires < time.time():
            return _json(401, _error("Bad credentials", 401))
        return None

    def _valid_jwt(self, token: str) -> bool:
        try:
            if self._public_key is not None:
                claims = jwt.decode(
                    token,
                    self._public_key,
                    algorithms=["RS256"],
                    options={"require": ["exp", "iat", "iss"]},
                )
            else:
                claims = jwt.decode(
                    token, options={"verify_signature": False, "require": ["exp", "iss"]}
                )
                if claims["exp"] < time.time():
                    return False
        except jwt.PyJWTError:
            return False
        # GitHub refuses App JWTs that live longer than ten minutes.
        if claims["exp"] > time.time() + 600 + 30:
            return False
        return self.app_id is None or str(claims["iss"]) == str(self.app_id)

    # answers

    def _from_state(
        self, operation: Operation, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Response:
        handler = getattr(self, "_op_" + re.sub(r"\W", "_", operation.operation_id), None)
        if handler is not None:
            with self._lock:
                return handler(operation, params, query, body)
        if operation.example is None:
            return Response(status_code=operation.status)
        return _json(operation.status, copy.deepcopy(operation.example))

    def _repo_key(self, params: dict[str, str]) -> tuple[str, str]:
        return params["owner"].lower(), params["repo"].lower()

    def _repo_url(self, params: dict[str, str]) -> str:
        return f"{self.url}/repos/{params['owner']}/{params['repo']}"

    def _op_apps_create_installation_access_token(self, op: Operation, params, query, body):
        alphabet = string.ascii_letters + string.digits
        token = "ghs_" + "".join(secrets.choice(alphabet) for _ in range(36))
        expires = time.time() + self.token_ttl
        self._tokens[token] = expires
        self.issued_tokens.append(token)
        answer = copy.deepcopy(op.example)
        answer["token"] = token
        answer["expires_at"] = _timestamp(datetime.fromtimestamp(expires, UTC))
        return _json(op.status, answer)

    def _op_repos_get(self, op: Operation, params, query, body):
        answer = copy.deepcopy(op.example)
        answer["name"] = params["repo"]
        answer["full_name"] = f"{params['owner']}/{params['repo']}"
        answer["owner"]["login"] = params["owner"]
        branch = self._default_branches.get(self._repo_key(params))
        if branch is not None:
            answer["default_branch"] = branch
        return _json(op.status, answer)

    def _commit_key(self, params: dict[str, str]) -> tuple[str, str, str]:
        """The commit a `{ref}` names: a branch or tag `set_ref` knows, else the sha itself."""
        ref = params["ref"].removeprefix("heads/").removeprefix("tags/")
        commit = self._refs.get(self._repo_key(params), {}).get(ref)
        return (*self._repo_key(params), (commit["sha"] if commit else ref).lower())

    def _op_repos_get_combined_status_for_ref(self, op: Operation, params, query, body):
        key = self._commit_key(params)
        contexts = self._commit_statuses.get(key, {})
        template = op.example["statuses"][0]
        statuses = []
        for number, (context, state) in enumerate(contexts.items(), start=1):
            status = copy.deepcopy(template)
            status.update(
                id=number,
                node_id=base64.b64encode(f"StatusContext{number}".encode()).decode(),
                url=f"{self._repo_url(params)}/statuses/{key[2]}",
                state=state,
                context=context,
                description=f"{context}: {state}",
            )
            statuses.append(status)
        states = set(contexts.values())
        if states & {"failure", "error"}:
            combined = "failure"
        elif not states or "pending" in states:
            combined = "pending"  # GitHub: pending when there are no statuses at all
        else:
            combined = "success"
        answer = copy.deepcopy(op.example)
        answer.update(
            state=combined,
            statuses=_page(statuses, query),
            sha=key[2],
            total_count=len(statuses),
            commit_url=f"{self._repo_url(params)}/commits/{key[2]}",
            url=f"{self._repo_url(params)}/commits/{key[2]}/status",
        )
        return _json(op.status, answer)

    def _op_checks_list_for_ref(self, op: Operation, params, query, body):
        key = self._commit_key(params)
        template = op.example["check_runs"][0]
        runs = []
        for name, (run_id, status, conclusion) in self._check_runs.get(key, {}).items():
            if query.get("check_name") not in (None, name) or query.get("status") not in (
                None,
                status,
            ):
                continue
            run = copy.deepcopy(template)
            run.update(
                id=run_id,
                node_id=base64.b64encode(f"CheckRun{run_id}".encode()).decode(),
                head_sha=key[2],
                name=name,
                status=status,
                conclusion=conclusion,
                completed_at=run["completed_at"] if status == "completed" else None,
                url=f"{self._repo_url(params)}/check-runs/{run_id}",
                html_url=f"https://github.com/{params['owner']}/{params['repo']}/runs/{run_id}",
            )
            runs.append(run)
        return _json(op.status, {"total_count": len(runs), "check_runs": _page(runs, query)})

    def _op_repos_get_commit(self, op: Operation, params, query, body):
        ref = params["ref"]
        refs = self._refs.get(self._repo_key(params), {})
        commit = refs.get(ref) or refs.get(ref.removeprefix("heads/").removeprefix("tags/"))
        if commit is None:
            prefix = [c for key, c in refs.items() if len(ref) >= 7 and key.startswith(ref)]
            commit = prefix[0] if len(prefix) == 1 else None
        if commit is None and not refs:  # a repository nobody set up: the documented example
            return _json(op.status, copy.deepcopy(op.example))
        if commit is None and _SHA.fullmatch(ref):
            commit = {"sha": ref, "message": "A commit", "author": "octocat"}
        if commit is None:
            return _json(422, _error(f"No commit found for SHA: {ref}", 422))
        answer = copy.deepcopy(op.example)
        answer["sha"] = commit["sha"]
        answer["html_url"] = (
            f"https://github.com/{params['owner']}/{params['repo']}/commit/" + (commit["sha"])
        )
        answer["commit"]["message"] = commit["message"]
        if isinstance(answer.get("author"), dict):
            answer["author"]["login"] = commit["author"]
        return _json(op.status, answer)

    def _op_repos_compare_commits(self, op: Operation, params, query, body):
        parents = self._parents.get(self._repo_key(params), {})

        def distance(start: str, ancestor: str) -> int | None:
            steps, sha = 0, start
            while sha != ancestor:
                if sha not in parents or steps > 10_000:
                    return None
                sha, steps = parents[sha], steps + 1
            return steps

        base, head = params["base"], params["head"]
        ahead, behind = distance(head, base), distance(base, head)
        if base == head:
            status, ahead_by, behind_by = "identical", 0, 0
        elif ahead is not None:
            status, ahead_by, behind_by = "ahead", ahead, 0
        elif behind is not None:
            status, ahead_by, behind_by = "behind", 0, behind
        else:
            status, ahead_by, behind_by = "diverged", 1, 1
        answer = copy.deepcopy(op.example)
        answer.update(
            status=status,
            ahead_by=ahead_by,
            behind_by=behind_by,
            total_commits=ahead_by,
            commits=[],
            files=[],
        )
        return _json(op.status, answer)

    def _op_repos_create_deployment(self, op: Operation, params, query, body):
        deployment_id = next(self._ids)
        ref = body["ref"]
        environment = body.get("environment", "production")
        now = _timestamp(datetime.now(UTC))
        url = f"{self._repo_url(params)}/deployments/{deployment_id}"
        answer = copy.deepcopy(op.example)
        answer.update(
            id=deployment_id,
            node_id=base64.b64encode(f"Deployment{deployment_id}".encode()).decode(),
            url=url,
            statuses_url=f"{url}/statuses",
            repository_url=self._repo_url(params),
            sha=ref if _SHA.fullmatch(ref) else _fake_sha(f"{self._repo_url(params)}@{ref}"),
            ref=ref,
            task=body.get("task", "deploy"),
            payload=body.get("payload", {}),
            original_environment=environment,
            environment=environment,
            description=body.get("description"),
            created_at=now,
            updated_at=now,
            transient_environment=body.get("transient_environment", False),
            production_environment=body.get("production_environment", environment == "production"),
        )
        self._deployments.setdefault(self._repo_key(params), []).append(answer)
        self._statuses[deployment_id] = []
        return _json(op.status, answer)

    def _op_repos_list_deployments(self, op: Operation, params, query, body):
        found = [
            d
            for d in reversed(self._deployments.get(self._repo_key(params), []))
            if all(query.get(k) in (None, d[k]) for k in ("environment", "sha", "ref", "task"))
        ]
        return _json(op.status, _page(found, query))

    def _deployment(self, params: dict[str, str]) -> dict[str, Any] | None:
        wanted = int(params["deployment_id"])
        for deployment in self._deployments.get(self._repo_key(params), []):
            if deployment["id"] == wanted:
                return deployment
        return None

    def _op_repos_get_deployment(self, op: Operation, params, query, body):
        deployment = self._deployment(params)
        if deployment is None:
            return _json(404, _error("Not Found", 404))
        return _json(op.status, deployment)

    def _op_repos_create_deployment_status(self, op: Operation, params, query, body):
        deployment = self._deployment(params)
        if deployment is None:
            return _json(404, _error("Not Found", 404))
        status_id = next(self._ids)
        now = _timestamp(datetime.now(UTC))
        answer = copy.deepcopy(op.example)
        answer.update(
            id=status_id,
            node_id=base64.b64encode(f"DeploymentStatus{status_id}".encode()).decode(),
            url=f"{deployment['url']}/statuses/{status_id}",
            deployment_url=deployment["url"],
            repository_url=deployment["repository_url"],
            state=body["state"],
            description=body.get("description", ""),
            environment=body.get("environment", deployment["environment"]),
            target_url=body.get("target_url", body.get("log_url", "")),
            log_url=body.get("log_url", body.get("target_url", "")),
            environment_url=body.get("environment_url", ""),
            created_at=now,
            updated_at=now,
        )
        self._statuses[deployment["id"]].append(answer)
        return _json(op.status, answer)

    def _op_repos_list_deployment_statuses(self, op: Operation, params, query, body):
        deployment = self._deployment(params)
        if deployment is None:
            return _json(404, _error("Not Found", 404))
        return _json(op.status, _page(self._statuses[deployment["id"]][::-1], query))

    def _op_repos_get_content(self, op: Operation, params, query, body):
        owner, repo = self._repo_key(params)
        path = params["path"].strip("/")
        text = self._files.get((owner, repo, path, query.get("ref")))
        if text is None:
            text = self._files.get((owner, repo, path, None))
        if text is None:
            return _json(404, _error("Not Found", 404))
        data = text.encode()
        sha = _git_blob_sha(data)
        encoded = base64.b64encode(data).decode()
        ref = query.get("ref", "main")
        url = f"{self._repo_url(params)}/contents/{path}?ref={ref}"
        html_url = f"https://github.com/{params['owner']}/{params['repo']}/blob/{ref}/{path}"
        git_url = f"{self._repo_url(params)}/git/blobs/{sha}"
        answer = copy.deepcopy(op.example)
        answer.update(
            type="file",
            encoding="base64",
            size=len(data),
            name=path.rsplit("/", 1)[-1],
            path=path,
            # GitHub wraps the base64 text every 60 characters.
            content="\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60)) + "\n",
            sha=sha,
            url=url,
            git_url=git_url,
            html_url=html_url,
            download_url=(
                f"https://raw.githubusercontent.com/{params['owner']}/{params['repo']}/{ref}/{path}"
            ),
            _links={"self": url, "git": git_url, "html": html_url},
        )
        return _json(op.status, answer)

    def _op_repos_get_collaborator_permission_level(self, op: Operation, params, query, body):
        owner, repo = self._repo_key(params)
        role = self._permissions.get((owner, repo, params["username"].lower()), "none")
        rank = _PERMISSION_LEVELS.index(role)
        answer = copy.deepcopy(op.example)
        answer["permission"] = {"maintain": "write", "triage": "read"}.get(role, role)
        answer["role_name"] = role
        user = answer["user"]
        user["login"] = params["username"]
        user["role_name"] = role
        user["permissions"] = {
            "admin": rank >= 5,
            "maintain": rank >= 4,
            "push": rank >= 3,
            "triage": rank >= 2,
            "pull": rank >= 1,
        }
        return _json(op.status, answer)

    def _op_issues_create_comment(self, op: Operation, params, query, body):
        answer = self._add_comment(op, params, body["body"], datetime.now(UTC))
        return _json(op.status, copy.deepcopy(answer))

    def _add_comment(
        self, op: Operation, params: dict[str, str], text: str, at: datetime
    ) -> dict[str, Any]:
        comment_id = next(self._ids)
        when = _timestamp(at)
        number = params["issue_number"]
        comment = copy.deepcopy(op.example)
        comment.update(
            id=comment_id,
            body=text,
            url=f"{self._repo_url(params)}/issues/comments/{comment_id}",
            issue_url=f"{self._repo_url(params)}/issues/{number}",
            html_url=(
                f"https://github.com/{params['owner']}/{params['repo']}/issues/{number}"
                f"#issuecomment-{comment_id}"
            ),
            created_at=when,
            updated_at=when,
        )
        self._comments.setdefault((*self._repo_key(params), int(number)), []).append(comment)
        return comment

    def _op_issues_list_comments(self, op: Operation, params, query, body):
        since = query.get("since")
        if since is not None and not _ISO8601.fullmatch(since):
            # GitHub's own words for a `since` it cannot read.
            message = "The since parameter needs to be in ISO 8601 format: YYYY-MM-DDTHH:MM:SSZ"
            return _json(422, _error(message, 422))
        floor = datetime.fromisoformat(since) if since is not None else None
        issue = (*self._repo_key(params), int(params["issue_number"]))
        found = [
            c
            for c in self._comments.get(issue, [])
            if floor is None or datetime.fromisoformat(c["updated_at"]) >= floor
        ]
        per_page = min(int(query.get("per_page", 30)), 100)
        page = max(int(query.get("page", 1)), 1)
        headers = {}
        last = max((len(found) + per_page - 1) // per_page, 1)
        if page < last:
            url = f"{self._repo_url(params)}/issues/{params['issue_number']}/comments"
            kept = {"since": since} if since is not None else {}
            links = [
                f'<{url}?{urlencode({**kept, "per_page": per_page, "page": n})}>; rel="{rel}"'
                for n, rel in ((page + 1, "next"), (last, "last"))
            ]
            headers["link"] = ", ".join(links)
        return _json(op.status, copy.deepcopy(_page(found, query)), headers)

    def _op_issues_update_comment(self, op: Operation, params, query, body):
        answer = copy.deepcopy(op.example)
        answer.update(
            id=int(params["comment_id"]),
            body=body["body"],
            updated_at=_timestamp(datetime.now(UTC)),
        )
        for comments in self._comments.values():
            for comment in comments:
                if comment["id"] == answer["id"]:
                    comment.update(body=answer["body"], updated_at=answer["updated_at"])
        return _json(op.status, answer)

    def _op_reactions_create_for_issue_comment(self, op: Operation, params, query, body):
        answer = copy.deepcopy(op.example)
        answer.update(id=next(self._ids), content=body["content"])
        return _json(op.status, answer)

    def _op_apps_list_webhook_deliveries(self, op: Operation, params, query, body):
        # GitHub pages this list with an opaque cursor, not `page`; here it is the id of the
        # last delivery of the page before.
        found = [
            d
            for d in self._newest_deliveries()
            if query.get("status") is None
            or (query["status"] == "success") == (d["status"] == "OK")
        ]
        start = 0
        cursor = query.get("cursor")
        if cursor is not None:
            ids = [f"v1_{d['id']}" for d in found]
            if cursor not in ids:
                return _json(422, _validation_error([f"cursor: {cursor!r} is not valid"]))
            start = ids.index(cursor) + 1
        per_page = min(int(query.get("per_page", 30)), 100)
        page = found[start : start + per_page]
        headers = {}
        if start + per_page < len(found):
            after = f"v1_{page[-1]['id']}"
            headers["link"] = (
                f'<{self.url}/app/hook/deliveries?per_page={per_page}&cursor={after}>; rel="next"'
            )
        return _json(op.status, copy.deepcopy(page), headers)

    def _op_apps_redeliver_webhook_delivery(self, op: Operation, params, query, body):
        wanted = int(params["delivery_id"])
        found = [d for d in self._hook_deliveries if d["id"] == wanted]
        if not found:
            return _json(404, _error("Not Found", 404))
        delivery = found[0]
        delivered_at = datetime.fromisoformat(delivery["delivered_at"])
        if delivered_at < datetime.now(UTC) - REDELIVERY_WINDOW:
            return _json(422, _validation_error(["delivery_id: older than three days"]))
        if self.redelivery_status_code is not None:
            self._add_hook_delivery(
                **{key: delivery[key] for key in _DELIVERY_IDENTITY},
                status_code=self.redelivery_status_code,
                delivered_at=datetime.now(UTC),
                redelivery=True,
            )
        return _json(op.status, {})

    def _op_pulls_get(self, op: Operation, params, query, body):
        answer = copy.deepcopy(op.example)
        answer["number"] = int(params["pull_number"])
        return _json(op.status, answer)


_UNPARSABLE = object()


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    common = {
        "x-github-request-id": secrets.token_hex(8).upper(),
        "x-github-media-type": "github.v3; format=json",
    }
    if status in (204, 304) or body is None:
        return Response(status_code=status, headers={**common, **(headers or {})})
    return Response(
        json.dumps(body),
        status_code=status,
        headers={**common, **(headers or {})},
        media_type="application/json; charset=utf-8",
    )


def _error(message: str, status: int) -> dict[str, Any]:
    return {"message": message, "documentation_url": DOCUMENTATION_URL, "status": str(status)}


def _validation_error(problems: list[str]) -> dict[str, Any]:
    return {
        "message": "Invalid request.\n\n" + "\n".join(problems),
        "documentation_url": DOCUMENTATION_URL,
        "status": "422",
        "errors": [{"resource": "Request", "code": "invalid", "message": p} for p in problems],
    }


def _page(items: list[Any], query: dict[str, str]) -> list[Any]:
    per_page = min(int(query.get("per_page", 30)), 100)
    page = max(int(query.get("page", 1)), 1)
    return items[(page - 1) * per_page : page * per_page]


def _timestamp(moment: datetime) -> str:
    # githubkit parses installation-token expiry with exactly this format.
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_DELIVERY_IDENTITY = ("guid", "event", "action", "installation_id", "repository_id")


def _guid() -> str:
    # GitHub's delivery guids are UUIDs.
    return str(uuid.uuid4())


def _delivery_failure(status_code: int) -> str:
    return "timed out" if status_code == 0 else f"Invalid HTTP Response: {status_code}"


def _git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _fake_sha(seed: str) -> str:
    return hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()


def main(argv: list[str] | None = None) -> None:
    """`python -m integrations.emulators.github --port 8081 --app-id 123`"""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--app-id", default=None)
    parser.add_argument(
        "--app-public-key-file",
        type=Path,
        default=None,
        help="PEM public key to verify App JWTs with",
    )
    parser.add_argument(
        "--spec", default=None, help="the corpora folder or openapi-subset.json itself"
    )
    parser.add_argument("--base-path", default="", help="e.g. /api/v3, as on GHES")
    parser.add_argument("--token-ttl", type=float, default=3600)
    args = parser.parse_args(argv)
    key = args.app_public_key_file.read_bytes() if args.app_public_key_file else None
    emulator = GitHubEmulator(
        app_id=args.app_id,
        app_public_key=key,
        spec=args.spec,
        token_ttl=args.token_ttl,
        base_path=args.base_path,
        host=args.host,
        port=args.port,
    )
    emulator.serve_forever(lambda url: print(f"GitHub emulator on {url}", flush=True))


if __name__ == "__main__":
    main()
