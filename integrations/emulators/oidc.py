"""A GitHub Actions OIDC issuer emulator: it stands in for
https://token.actions.githubusercontent.com on loopback.

It serves what a relying party reads, in GitHub's shapes: the OpenID configuration at
`/.well-known/openid-configuration` (its `jwks_uri` points at `/.well-known/jwks`) and the
key set, made of RSA keys generated when it starts (never written anywhere). `mint` signs
tokens as a workflow's `ACTIONS_ID_TOKEN_REQUEST_URL` would hand them out, with GitHub's
claims for a run in a repository; tests change or drop any claim, or sign with a key the
issuer does not publish.

    with OIDCEmulator() as issuer:
        token = issuer.mint(repository="acme/api", actor="alice")   # audience `deploybot`
        issuer.rotate()                      # a new signing key; the old one stays published
        issuer.rotate(keep_old=False)        # ... or is withdrawn
        issuer.fail("jwks", status=503, times=3)
        issuer.requests_to("jwks")           # how often the key set was fetched

`issuer.url` is the issuer (what `DEPLOYBOT_OIDC_ISSUER` names and tokens carry as `iss`).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.requests import Request
from starlette.responses import Response

from integrations.emulators.loopback import LoopbackServer, take_fault

__all__ = ["DISCOVERY_PATH", "JWKS_PATH", "OIDCEmulator", "SigningKey"]

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/.well-known/jwks"
_ENDPOINTS = {DISCOVERY_PATH: "discovery", JWKS_PATH: "jwks"}
CLAIMS_SUPPORTED = [
    "sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "sha", "repository",
    "repository_id", "repository_owner", "repository_owner_id", "run_id", "run_number",
    "run_attempt", "actor", "actor_id", "workflow", "workflow_ref", "workflow_sha",
    "head_ref", "base_ref", "event_name", "ref_type", "ref_protected", "environment",
    "environment_node_id", "job_workflow_ref", "job_workflow_sha", "repository_visibility",
    "runner_environment",
]  # fmt: skip


@dataclass(frozen=True)
class SigningKey:
    """One of the issuer's RSA keys and its key id."""

    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh 2048-bit key with a random id."""
        return cls(
            kid=uuid.uuid4().hex,
            private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        )

    def jwk(self) -> dict[str, Any]:
        """The public half as a JWK, as GitHub publishes it."""
        public = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "use": "sig", "alg": "RS256"}


@dataclass
class _Fault:
    status: int
    remaining: int


class OIDCEmulator(LoopbackServer):
    """GitHub Actions' OIDC issuer, served on 127.0.0.1 from a background thread."""

    def __init__(self, *, audience: str = "deploybot", host: str = "127.0.0.1", port: int = 0):
        super().__init__(self, host=host, port=port, thread_name="oidc-emulator")
        self.audience = audience
        self._lock = threading.Lock()
        self._keys = [SigningKey.generate()]
        self._requests: list[str] = []
        self._faults: dict[str, list[_Fault]] = {}

    @property
    def url(self) -> str:
        """The issuer: `iss` of its tokens, the base of its `/.well-known/` documents."""
        return self.base_url

    # --- keys ---------------------------------------------------------------------------------

    @property
    def signing_key(self) -> SigningKey:
        """The key new tokens are signed with (the newest)."""
        with self._lock:
            return self._keys[-1]

    @property
    def kids(self) -> list[str]:
        """The ids of the published keys, oldest first."""
        with self._lock:
            return [key.kid for key in self._keys]

    def rotate(self, *, keep_old: bool = True) -> str:
        """Sign with a new key from now on and publish it; `keep_old=False` withdraws the
        others (tokens signed with them stop verifying once a relying party refetches).
        Returns the new key's id."""
        new = SigningKey.generate()
        with self._lock:
            self._keys = [*self._keys, new] if keep_old else [new]
        return new.kid

    # --- tokens -------------------------------------------------------------------------------

    def claims(
        self,
        *,
        repository: str = "acme/api",
        actor: str = "octocat",
        ref: str = "refs/heads/main",
        lifetime: float = 300,
        issued_at: float | None = None,
    ) -> dict[str, Any]:
        """GitHub's claims for a job of a `push` run in `repository` on `ref`."""
        now = int(issued_at if issued_at is not None else time.time())
        owner = repository.split("/")[0]
        return {
            "jti": str(uuid.uuid4()),
            "sub": f"repo:{repository}:ref:{ref}",
            "aud": self.audience,
            "ref": ref,
            "sha": "a" * 40,
            "repository": repository,
            "repository_id": "74",
            "repository_owner": owner,
            "repository_owner_id": "65",
            "repository_visibility": "private",
            "run_id": "1234567890",
            "run_number": "42",
            "run_attempt": "1",
            "runner_environment": "github-hosted",
            "actor": actor,
            "actor_id": "12",
            "workflow": "deploy",
            "workflow_ref": f"{repository}/.github/workflows/deploy.yml@{ref}",
            "head_ref": "",
            "base_ref": "",
            "event_name": "push",
            "ref_type": "branch",
            "ref_protected": "true",
            "job_workflow_ref": f"{repository}/.github/workflows/deploy.yml@{ref}",
            "iss": self.url,
            "nbf": now - 5,
            "iat": now,
            "exp": int(now + lifetime),
        }

    def mint(
        self,
        *,
        repository: Any = "acme/api",
        actor: Any = "octocat",
        lifetime: float = 300,
        issued_at: float | None = None,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
        **changes: Any,
    ) -> str:
        """A signed token for a job in `repository` started by `actor`. `changes` replace
        claims (`aud="other"`); a claim set to None is left out (`repository` and `actor`
        too, or set to anything at all). `key` signs with another key (one the issuer does
        not publish, say); `headers` adds to the JOSE header."""
        payload = self.claims(
            repository=repository if isinstance(repository, str) else "acme/api",
            lifetime=lifetime,
            issued_at=issued_at,
        )
        payload.update(repository=repository, actor=actor, **changes)
        payload = {name: value for name, value in payload.items() if value is not None}
        signer = key or self.signing_key
        header = {"typ": "JWT", "kid": signer.kid, **(headers or {})}
        return jwt.encode(payload, signer.private_key, algorithm="RS256", headers=header)

    # --- faults and what was asked ------------------------------------------------------------

    def fail(self, endpoint: str = "jwks", *, status: int = 503, times: int = 1) -> None:
        """Answer the next `times` requests to `endpoint` (`jwks`, `discovery`, `*`: either)
        with `status` and no document."""
        with self._lock:
            self._faults.setdefault(endpoint, []).append(_Fault(status, times))

    def requests_to(self, endpoint: str) -> int:
        """How many requests `endpoint` (`jwks` or `discovery`) received, failed ones too."""
        with self._lock:
            return self._requests.count(endpoint)

    def reset(self) -> None:
        """Forget requests and faults (keys stay)."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()

    # --- serving ------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        response = self._answer(Request(scope, receive))
        await response(scope, receive, send)

    def _answer(self, request: Request) -> Response:
        endpoint = _ENDPOINTS.get(request.url.path)
        if endpoint is None:
            return _json({"message": "Not Found"}, 404)
        if request.method not in {"GET", "HEAD"}:
            return _json({"message": "Method Not Allowed"}, 405)
        with self._lock:
            self._requests.append(endpoint)
            fault = take_fault(self._faults, endpoint)
            keys = list(self._keys)
        if fault is not None:
            return Response(b"", status_code=fault.status)
        if endpoint == "jwks":
            return _json({"keys": [key.jwk() for key in keys]})
        return _json(
            {
                "issuer": self.url,
                "jwks_uri": self.url + JWKS_PATH,
                "subject_types_supported": ["public", "pairwise"],
                "response_types_supported": ["id_token"],
                "claims_supported": CLAIMS_SUPPORTED,
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid"],
            }
        )


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body).encode(), status_code=status, media_type="application/json")


def main(argv: list[str] | None = None) -> None:
    """`python -m integrations.emulators.oidc --port 8090 --mint acme/api`: serve, printing
    the issuer and a token for each repository named."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--audience", default="deploybot")
    parser.add_argument("--mint", action="append", default=[], metavar="OWNER/REPO")
    parser.add_argument("--lifetime", type=float, default=3600, help="token lifetime, seconds")
    args = parser.parse_args(argv)
    emulator = OIDCEmulator(audience=args.audience, host=args.host, port=args.port)

    def ready(url: str) -> None:
        print(f"OIDC issuer emulator on {url}", flush=True)
        for repository in args.mint:
            print(f"{repository}: {emulator.mint(repository=repository, lifetime=args.lifetime)}")

    emulator.serve_forever(ready)


if __name__ == "__main__":
    main()
