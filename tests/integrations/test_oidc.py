"""The OIDC verifier against the issuer emulator over real HTTP: what it accepts and refuses,
and how it fetches, caches, refetches and throttles the issuer's keys."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from integrations.emulators.oidc import OIDCEmulator, SigningKey
from integrations.oidc import (
    Claims,
    KeysUnavailable,
    NotAToken,
    OIDCVerifier,
    TokenRejected,
)


class Clock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def issuer() -> Iterator[OIDCEmulator]:
    with OIDCEmulator() as emulator:
        yield emulator


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(issuer: OIDCEmulator, clock: Clock) -> OIDCVerifier:
    return OIDCVerifier(issuer=issuer.url, audience="deploybot", clock=clock)


def segment(value: dict[str, Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forged(issuer: OIDCEmulator, alg: str, secret: bytes = b"") -> str:
    """A token with valid claims whose header says `alg`, signed with HMAC over `secret`
    (or unsigned for `none`): what an attacker who knows only the public key can make."""
    header = {"typ": "JWT", "alg": alg, "kid": issuer.signing_key.kid}
    signing_input = f"{segment(header)}.{segment(issuer.claims())}"
    if alg == "none":
        return signing_input + "."
    digest = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{segment(digest)}"


async def rejected(verifier: OIDCVerifier, token: str) -> str:
    with pytest.raises(TokenRejected) as caught:
        await verifier.verify(token)
    reason = caught.value.reason
    assert token not in reason and token not in str(caught.value)
    return reason


# --- accepted ----------------------------------------------------------------------------


async def test_a_token_from_the_issuer_gives_its_claims(
    issuer: OIDCEmulator, verifier: OIDCVerifier
) -> None:
    token = issuer.mint(repository="acme/api", actor="alice")
    claims = await verifier.verify(token)
    assert isinstance(claims, Claims)
    assert (claims.repository, claims.repository_owner) == ("acme/api", "acme")
    assert claims.actor == "alice"
    assert claims.subject == "repo:acme/api:ref:refs/heads/main"
    assert claims.all["event_name"] == "push"
    assert "all=" not in repr(claims), "the whole claim set stays out of logs"
    # Without an actor, the subject still names the caller.
    anonymous = await verifier.verify(issuer.mint(actor=None))
    assert anonymous.actor is None


async def test_clocks_a_little_apart_are_forgiven(
    issuer: OIDCEmulator, verifier: OIDCVerifier
) -> None:
    now = time.time()
    just_expired = issuer.mint(issued_at=now - 330, lifetime=300)  # 30 s ago
    assert (await verifier.verify(just_expired)).repository == "acme/api"
    from_the_near_future = issuer.mint(issued_at=now + 20)
    assert (await verifier.verify(from_the_near_future)).repository == "acme/api"


async def test_an_audience_list_that_includes_deploybot_is_accepted(
    issuer: OIDCEmulator, verifier: OIDCVerifier
) -> None:
    token = issuer.mint(aud=["sts.amazonaws.com", "deploybot"])
    assert (await verifier.verify(token)).repository == "acme/api"


# --- refused -----------------------------------------------------------------------------


async def test_expired_and_future_tokens_are_refused(
    issuer: OIDCEmulator, verifier: OIDCVerifier
) -> None:
    now = time.time()
    assert await rejected(verifier, issuer.mint(issued_at=now - 900)) == "it has expired"
    future = issuer.mint(issued_at=now + 600)
    assert "not valid yet" in await rejected(verifier, future)
    not_before = issuer.mint(nbf=int(now) + 600)
    assert "not valid yet" in await rejected(verifier, not_before)


async def test_other_audiences_and_issuers_are_refused(
    issuer: OIDCEmulator, verifier: OIDCVerifier
) -> None:
    for audience in ["https://github.com/acme", "sts.amazonaws.com", ["a", "b"]]:
        reason = await rejected(verifier, issuer.mint(aud=audience))
        assert reason == "its audience is not `deploybot`"
    foreign = issuer.mint(iss="https://token.actions.githubusercontent.com")
    assert await rejected(verifier, foreign) == f"it was not issued by {issuer.url}"
    assert issuer.requests_to("jwks") == 1, "the foreign issuer's token fetched nothing"


async def test_a_token_from_another_issuer_costs_no_request(
    issuer: OIDCEmulator, verifier: OIDCVerifier
) -> None:
    await rejected(verifier, issuer.mint(iss="https://evil.example"))
    await rejected(verifier, issuer.mint(iss=None))
    header = {"alg": "RS256", "kid": issuer.signing_key.kid}
    listed = {**issuer.claims(), "iss": [issuer.url]}  # PyJWT would not sign this: forge it
    await rejected(verifier, f"{segment(header)}.{segment(listed)}.{segment(b'sig')}")
    assert issuer.requests_to("discovery") == issuer.requests_to("jwks") == 0


async def test_a_bad_signature_is_refused(issuer: OIDCEmulator, verifier: OIDCVerifier) -> None:
    impostor = SigningKey(kid=issuer.signing_key.kid, private_key=SigningKey.generate().private_key)
    reason = await rejected(verifier, issuer.mint(key=impostor))
    assert reason == "its signature does not verify"
    header, _, signature = issuer.mint().split(".")
    other_payload = segment({**issuer.claims(), "repository": "acme/other"})
    tampered = f"{header}.{other_payload}.{signature}"
    assert await rejected(verifier, tampered) == "its signature does not verify"


async def test_none_and_hmac_algorithms_are_refused_before_any_key_is_fetched(
    issuer: OIDCEmulator, verifier: OIDCVerifier
) -> None:
    public_pem = issuer.signing_key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for token in [
        forged(issuer, "none"),
        forged(issuer, "HS256", public_pem),
        forged(issuer, "HS256", json.dumps(issuer.signing_key.jwk()).encode()),
    ]:
        reason = await rejected(verifier, token)
        assert "only RS256 is" in reason
    assert issuer.requests_to("jwks") == 0


async def test_missing_claims_are_named(issuer: OIDCEmulator, verifier: OIDCVerifier) -> None:
    for claim in ["repository", "repository_owner", "sub", "exp", "iat", "aud"]:
        token = issuer.mint(**{claim: None})
        assert await rejected(verifier, token) == f"it has no `{claim}` claim", claim


async def test_claims_that_do_not_hang_together_are_refused(
    issuer: OIDCEmulator, verifier: OIDCVerifier
) -> None:
    assert "repository_owner" in await rejected(verifier, issuer.mint(repository_owner="evil"))
    assert "`repository`" in await rejected(verifier, issuer.mint(repository="acme"))
    assert "`repository`" in await rejected(verifier, issuer.mint(repository=["acme/api"]))
    assert "`sub`" in await rejected(verifier, issuer.mint(sub=""))


async def test_what_is_not_a_jwt_is_told_apart(
    issuer: OIDCEmulator, verifier: OIDCVerifier
) -> None:
    for token in ["api-token-for-tests", "a.b.c", "x" * 20_000, "", "..", segment(b"{}") + ".."]:
        with pytest.raises(NotAToken) as caught:
            await verifier.verify(token)
        assert caught.value.reason == "it is not a JWT"
    no_kid = jwt.encode(issuer.claims(), issuer.signing_key.private_key, algorithm="RS256")
    assert "`kid`" in await rejected(verifier, no_kid)
    assert issuer.requests_to("jwks") == 0


# --- keys: cache, rotation, throttling, outages --------------------------------------------


async def test_keys_are_fetched_once_and_cached(
    issuer: OIDCEmulator, verifier: OIDCVerifier, clock: Clock
) -> None:
    for _ in range(5):
        await verifier.verify(issuer.mint())
    assert (issuer.requests_to("discovery"), issuer.requests_to("jwks")) == (1, 1)
    clock.advance(599)
    await verifier.verify(issuer.mint())
    assert issuer.requests_to("jwks") == 1
    clock.advance(2)  # ten minutes on: fetched again
    await verifier.verify(issuer.mint())
    assert (issuer.requests_to("discovery"), issuer.requests_to("jwks")) == (2, 2)


async def test_concurrent_requests_share_one_fetch(
    issuer: OIDCEmulator, verifier: OIDCVerifier
) -> None:
    tokens = [issuer.mint(actor=f"user{n}") for n in range(20)]
    found = await asyncio.gather(*(verifier.verify(token) for token in tokens))
    assert [c.actor for c in found] == [f"user{n}" for n in range(20)]
    assert issuer.requests_to("jwks") == 1


async def test_a_rotated_key_is_fetched_when_a_token_names_it(
    issuer: OIDCEmulator, verifier: OIDCVerifier, clock: Clock
) -> None:
    old = issuer.mint()
    await verifier.verify(old)
    clock.advance(60)
    new_kid = issuer.rotate()
    new = issuer.mint()
    assert jwt.get_unverified_header(new)["kid"] == new_kid
    assert (await verifier.verify(new)).repository == "acme/api"
    assert issuer.requests_to("jwks") == 2
    await verifier.verify(old)  # the old key is still published, and still cached
    await verifier.verify(issuer.mint())
    assert issuer.requests_to("jwks") == 2

    clock.advance(60)
    issuer.rotate(keep_old=False)
    await verifier.verify(issuer.mint())
    assert issuer.requests_to("jwks") == 3
    assert "does not publish" in await rejected(verifier, old)


async def test_unknown_key_ids_refetch_at_most_every_30_seconds(
    issuer: OIDCEmulator, verifier: OIDCVerifier, clock: Clock
) -> None:
    await verifier.verify(issuer.mint())
    clock.advance(30)
    strangers = [issuer.mint(key=SigningKey.generate()) for _ in range(3)]
    for token in strangers:
        reason = await rejected(verifier, token)
        assert reason == f"it is signed with a key {issuer.url} does not publish"
    assert issuer.requests_to("jwks") == 2, "one refetch for the first stranger only"
    clock.advance(29)
    await rejected(verifier, strangers[0])
    assert issuer.requests_to("jwks") == 2
    # A key the issuer starts using within the throttle is found once it has passed.
    issuer.rotate()
    fresh = issuer.mint()
    await rejected(verifier, fresh)
    clock.advance(1)
    assert (await verifier.verify(fresh)).repository == "acme/api"
    assert issuer.requests_to("jwks") == 3


async def test_an_unreachable_key_set_is_unavailable_not_a_rejection(
    issuer: OIDCEmulator, verifier: OIDCVerifier, clock: Clock
) -> None:
    issuer.fail("jwks", status=503)
    token = issuer.mint()
    with pytest.raises(KeysUnavailable) as caught:
        await verifier.verify(token)
    assert caught.value.reason == (
        f"the keys of {issuer.url} are unavailable: its key set at "
        f"{issuer.url}/.well-known/jwks answered 503"
    )
    # Failing again at once would hammer an issuer that is down: wait first.
    with pytest.raises(KeysUnavailable):
        await verifier.verify(token)
    assert issuer.requests_to("jwks") == 1
    clock.advance(30)
    assert (await verifier.verify(token)).repository == "acme/api"
    assert issuer.requests_to("jwks") == 2


async def test_cached_keys_outlive_an_outage_for_an_hour(
    issuer: OIDCEmulator, verifier: OIDCVerifier, clock: Clock
) -> None:
    await verifier.verify(issuer.mint())
    issuer.fail("*", status=500, times=1000)
    clock.advance(601)
    assert (await verifier.verify(issuer.mint())).repository == "acme/api"
    assert issuer.requests_to("discovery") == 2, "it tried to refresh"
    clock.advance(3000)
    assert (await verifier.verify(issuer.mint())).repository == "acme/api"
    clock.advance(600)
    with pytest.raises(KeysUnavailable):
        await verifier.verify(issuer.mint())


async def test_broken_discovery_documents_and_dead_issuers(
    issuer: OIDCEmulator, clock: Clock
) -> None:
    verifier = OIDCVerifier(issuer=issuer.url, audience="deploybot", clock=clock)
    issuer.fail("discovery", status=404)
    with pytest.raises(KeysUnavailable) as caught:
        await verifier.verify(issuer.mint())
    assert "OpenID configuration" in caught.value.reason and "404" in caught.value.reason
    assert issuer.requests_to("jwks") == 0

    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{unused.getsockname()[1]}"
    nobody = OIDCVerifier(issuer=dead, audience="deploybot", timeout_seconds=2)
    with pytest.raises(KeysUnavailable) as caught:
        await nobody.verify(issuer.mint(iss=dead))
    assert "could not be fetched (ConnectError)" in caught.value.reason


async def test_the_emulator_publishes_githubs_document_shapes(issuer: OIDCEmulator) -> None:
    """GitHub's fields, so the verifier is tried on what it will really read."""
    async with httpx.AsyncClient() as client:
        document = (await client.get(f"{issuer.url}/.well-known/openid-configuration")).json()
        keys = (await client.get(document["jwks_uri"])).json()["keys"]
    assert document["issuer"] == issuer.url
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"repository", "repository_owner", "actor"} <= set(document["claims_supported"])
    assert [(k["kty"], k["alg"], k["use"], k["kid"]) for k in keys] == [
        ("RSA", "RS256", "sig", issuer.signing_key.kid)
    ]
    assert "d" not in keys[0], "only the public half is published"
