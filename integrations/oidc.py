"""GitHub Actions OIDC tokens: verifying the JWT a workflow sends as its bearer token.

A workflow with `permissions: id-token: write` asks GitHub for a token with audience
`deploybot` and sends it; `OIDCVerifier.verify` checks it against the issuer's published
keys and returns the claims deploybot acts on (the repository the workflow runs in, and who
started it).

    verifier = OIDCVerifier(issuer="https://token.actions.githubusercontent.com",
                            audience="deploybot")
    claims = await verifier.verify(token)      # TokenRejected / KeysUnavailable
    claims.repository, claims.actor

Keys are found through `{issuer}/.well-known/openid-configuration` (its `jwks_uri`) and
kept for `cache_seconds`. A token signed with a key not in the cache refetches them once
(the issuer rotated its keys), but never more often than every `refetch_seconds`, so a
stream of made-up key ids cannot make deploybot hammer GitHub; a failed fetch waits as
long before the next try. While a refresh fails, keys fetched within `stale_seconds` past
their cache time still verify (GitHub's keys outlive an outage of its JWKS endpoint).

Errors carry a short `reason` for the caller that never repeats the token: `TokenRejected`
(the token is not acceptable: answer 401) and `KeysUnavailable` (the keys could not be
had: answer 503, try again later).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import structlog
from jwt import PyJWK, PyJWKSet

__all__ = [
    "GITHUB_ACTIONS_ISSUER",
    "Claims",
    "KeysUnavailable",
    "NotAToken",
    "OIDCError",
    "OIDCVerifier",
    "TokenRejected",
]

log = structlog.get_logger(__name__)

GITHUB_ACTIONS_ISSUER = "https://token.actions.githubusercontent.com"
DISCOVERY_PATH = "/.well-known/openid-configuration"
# GitHub signs with RS256 only; a short list keeps `none` and HMAC-with-the-public-key out.
ALGORITHMS = ("RS256",)
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "sub", "repository", "repository_owner")
MAX_TOKEN_LENGTH = 16_384  # GitHub's are ~1.5 kB; anything far bigger is not one of them
_REPOSITORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")


class OIDCError(Exception):
    """A token could not be verified; `reason` says why in a few words (never the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TokenRejected(OIDCError):
    """The token is not acceptable: expired, for another audience or issuer, badly signed,
    or missing a claim."""


class NotAToken(TokenRejected):
    """The bearer is not a JWT at all (a static token that did not match, say)."""


class KeysUnavailable(OIDCError):
    """The issuer's keys could not be fetched, so no token can be checked for now."""


@dataclass(frozen=True)
class Claims:
    """What a verified token says: the workflow's repository (`owner/name`), its owner, the
    subject (`repo:owner/name:ref:...`), and the person who started the run, if named."""

    repository: str
    repository_owner: str
    subject: str
    actor: str | None
    all: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Claims:
        """The claims of a decoded, verified payload; `TokenRejected` if they are malformed."""
        repository, owner, subject = (
            payload.get("repository"),
            payload.get("repository_owner"),
            payload.get("sub"),
        )
        if not isinstance(repository, str) or not _REPOSITORY.match(repository):
            raise TokenRejected("its `repository` claim is not an owner/name")
        if not isinstance(owner, str) or repository.split("/")[0].lower() != owner.lower():
            raise TokenRejected("its `repository_owner` claim is not the repository's owner")
        if not isinstance(subject, str) or not subject:
            raise TokenRejected("its `sub` claim is not a string")
        actor = payload.get("actor")
        return cls(
            repository=repository,
            repository_owner=owner,
            subject=subject,
            actor=actor if isinstance(actor, str) and actor else None,
            all=dict(payload),
        )


class OIDCVerifier:
    """Verifies OIDC JWTs from one issuer for one audience (see the module docstring).

    `clock` (monotonic seconds) times the key cache; token times (`exp`, `nbf`, `iat`) are
    checked against the wall clock with `leeway_seconds` either way.
    """

    def __init__(
        self,
        *,
        issuer: str = GITHUB_ACTIONS_ISSUER,
        audience: str = "deploybot",
        cache_seconds: float = 600.0,
        refetch_seconds: float = 30.0,
        stale_seconds: float = 3600.0,
        leeway_seconds: float = 60.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.discovery_url = issuer.rstrip("/") + DISCOVERY_PATH
        self._issuers = {issuer, issuer.rstrip("/")}
        self._cache_seconds = cache_seconds
        self._refetch_seconds = refetch_seconds
        self._stale_seconds = stale_seconds
        self._leeway = leeway_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._failure = "its keys have not been fetched yet"
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> Claims:
        """The token's claims once its signature, issuer, audience, times and required
        claims check out. Raises `NotAToken` or `TokenRejected` (401) or `KeysUnavailable`
        (503). Keys are fetched only for tokens that name this issuer and an allowed
        algorithm, so junk costs no request to the issuer."""
        kid = self._key_id(token)
        key = await self._key(kid)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=self.audience,
                issuer=self._issuers,
                leeway=self._leeway,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.PyJWTError as exc:
            raise TokenRejected(self._why(exc)) from None
        return Claims.from_payload(payload)

    # --- the token, before any key --------------------------------------------------------

    def _key_id(self, token: str) -> str:
        """The `kid` of a token that could be this issuer's; rejects anything else unseen."""
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise NotAToken("it is not a JWT")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise NotAToken("it is not a JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            shown = alg if isinstance(alg, str) and alg.isalnum() and len(alg) <= 10 else "?"
            raise TokenRejected(f"it is signed with `{shown}`; only {', '.join(ALGORITHMS)} is")
        iss = unverified.get("iss") if isinstance(unverified, dict) else None
        if not isinstance(iss, str) or iss not in self._issuers:
            raise TokenRejected(f"it was not issued by {self.issuer}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("its header names no signing key (`kid`)")
        return kid

    def _why(self, exc: jwt.PyJWTError) -> str:
        # Our own words: PyJWT's messages are safe today, but the 401 is ours to word.
        if isinstance(exc, jwt.ExpiredSignatureError):
            return "it has expired"
        if isinstance(exc, jwt.ImmatureSignatureError):
            return "it is not valid yet (`nbf` or `iat` is in the future)"
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return f"it has no `{exc.claim}` claim"
        if isinstance(exc, jwt.InvalidAudienceError):
            return f"its audience is not `{self.audience}`"
        if isinstance(exc, jwt.InvalidIssuerError):
            return f"it was not issued by {self.issuer}"
        if isinstance(exc, jwt.InvalidSignatureError):
            return "its signature does not verify"
        if isinstance(exc, jwt.InvalidAlgorithmError):
            return "its algorithm is not allowed"
        return "it is malformed"

    # --- keys -----------------------------------------------------------------------------

    async def _key(self, kid: str) -> PyJWK:
        if self._fresh() and kid in self._keys:
            return self._keys[kid]
        # One fetch at a time: requests that arrive meanwhile use its result.
        async with self._lock:
            if kid not in self._keys or not self._fresh():
                if self._may_fetch():
                    await self._refresh()
            if not self._usable():
                raise KeysUnavailable(f"the keys of {self.issuer} are unavailable: {self._failure}")
            if kid not in self._keys:
                raise TokenRejected(f"it is signed with a key {self.issuer} does not publish")
            return self._keys[kid]

    def _age(self) -> float | None:
        return None if self._fetched_at is None else self._clock() - self._fetched_at

    def _fresh(self) -> bool:
        age = self._age()
        return age is not None and age < self._cache_seconds

    def _usable(self) -> bool:
        age = self._age()
        return age is not None and age < self._cache_seconds + self._stale_seconds

    def _may_fetch(self) -> bool:
        if self._attempted_at is None:
            return True
        return self._clock() - self._attempted_at >= self._refetch_seconds

    async def _refresh(self) -> None:
        self._attempted_at = self._clock()
        try:
            keys = await self._fetch()
        except KeysUnavailable as exc:
            self._failure = exc.reason
            log.warning("oidc: keys unavailable", issuer=self.issuer, reason=exc.reason)
            return
        self._keys = keys
        self._fetched_at = self._attempted_at
        log.info("oidc: keys fetched", issuer=self.issuer, kids=sorted(keys))

    async def _fetch(self) -> dict[str, PyJWK]:
        async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=True) as client:
            discovery = await _get_json(client, self.discovery_url, "its OpenID configuration")
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
                raise KeysUnavailable(f"{self.discovery_url} names no `jwks_uri`")
            document = await _get_json(client, jwks_uri, "its key set")
        try:
            found = PyJWKSet.from_dict(document)
        except (jwt.PyJWTError, TypeError, AttributeError):
            raise KeysUnavailable(f"{jwks_uri} holds no usable keys") from None
        keys = {
            key.key_id: key
            for key in found
            if key.key_id
            and key.algorithm_name in ALGORITHMS
            and key.public_key_use in {None, "sig"}
        }
        if not keys:
            raise KeysUnavailable(f"{jwks_uri} holds no {'/'.join(ALGORITHMS)} signing keys")
        return keys


async def _get_json(client: httpx.AsyncClient, url: str, what: str) -> dict[str, Any]:
    try:
        response = await client.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise KeysUnavailable(
            f"{what} at {url} could not be fetched ({type(exc).__name__})"
        ) from None
    if response.status_code != 200:
        raise KeysUnavailable(f"{what} at {url} answered {response.status_code}")
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise KeysUnavailable(f"{what} at {url} is not a JSON object")
    return document
