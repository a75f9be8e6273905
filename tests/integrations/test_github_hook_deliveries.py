"""The App's webhook deliveries: `list_hook_deliveries` and `redeliver` against the GitHub
emulator over real HTTP. The corpus lacks these two operations (and listing an issue's
comments, whose calls are tested with the others); the emulator serves them from its
hand-written supplement, which these tests also hold it to."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jsonschema import Draft4Validator

from integrations.emulators.github import SUPPLEMENT_PATH, GitHubEmulator, default_spec_path
from integrations.github_app import (
    GitHubApp,
    GitHubNotFound,
    GitHubPermissionDenied,
    GitHubServerError,
    GitHubValidationFailed,
)

APP_ID = 4242
LIST = "apps/list-webhook-deliveries"
REDELIVER = "apps/redeliver-webhook-delivery"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def gh(key: rsa.RSAPrivateKey) -> Iterator[GitHubEmulator]:
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with GitHubEmulator(app_id=APP_ID, app_public_key=public) as emulator:
        yield emulator
        assert emulator.invalid_requests == []


@pytest.fixture
def app(gh: GitHubEmulator, key: rsa.RSAPrivateKey) -> GitHubApp:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    return GitHubApp(
        app_id=APP_ID, private_key=pem, base_url=gh.url, retry_scale=0.001, max_retry_wait=1.0
    )


def _minutes_ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


async def test_deliveries_are_listed_newest_first_page_by_page_through_the_link_cursor(
    gh: GitHubEmulator, app: GitHubApp
) -> None:
    added = [
        gh.add_hook_delivery(status_code=200 if n % 2 else 502, delivered_at=_minutes_ago(n))
        for n in range(5)
    ]

    seen, cursors, cursor = [], [], None
    while True:
        page = await app.list_hook_deliveries(cursor=cursor, per_page=2)
        seen.extend(page.deliveries)
        cursors.append(page.next_cursor)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert [d.guid for d in seen] == [d["guid"] for d in added]  # added newest first
    assert [c is not None for c in cursors] == [True, True, False]
    assert [d.failed for d in seen] == [True, False, True, False, True]
    calls = gh.calls_to(LIST)
    assert [call.query.get("cursor") for call in calls] == [None, cursors[0], cursors[1]]
    assert all(call.headers["authorization"].startswith("Bearer ey") for call in calls)
    first = seen[0]
    assert first.event == "issue_comment" and first.action == "created"
    assert first.status_code == 502 and first.status == "Invalid HTTP Response: 502"
    assert first.delivered_at.tzinfo is not None and not first.redelivery


async def test_a_delivery_that_got_no_answer_counts_as_failed(
    gh: GitHubEmulator, app: GitHubApp
) -> None:
    gh.add_hook_delivery(status_code=0)
    (delivery,) = (await app.list_hook_deliveries()).deliveries
    assert delivery.failed and delivery.status == "timed out"


async def test_a_redelivery_is_a_new_attempt_with_the_same_guid(
    gh: GitHubEmulator, app: GitHubApp
) -> None:
    failed = gh.add_hook_delivery(event="pull_request", action="opened", status_code=503)

    await app.redeliver(failed["id"])

    newest, original = (await app.list_hook_deliveries()).deliveries
    assert original.id == failed["id"] and not original.redelivery
    assert newest.guid == failed["guid"] and newest.id != failed["id"]
    assert newest.redelivery and not newest.failed
    assert (newest.event, newest.action) == ("pull_request", "opened")
    (call,) = gh.calls_to(REDELIVER)
    assert call.path == f"/app/hook/deliveries/{failed['id']}/attempts" and call.status == 202


async def test_redelivery_refusals_become_our_errors(gh: GitHubEmulator, app: GitHubApp) -> None:
    old = gh.add_hook_delivery(status_code=502, delivered_at=datetime.now(UTC) - timedelta(days=4))
    with pytest.raises(GitHubValidationFailed, match="422"):
        await app.redeliver(old["id"])
    with pytest.raises(GitHubNotFound):
        await app.redeliver(999_999)

    recent = gh.add_hook_delivery(status_code=502)
    gh.fail(REDELIVER, status=403)
    with pytest.raises(GitHubPermissionDenied):
        await app.redeliver(recent["id"])
    gh.fail(REDELIVER, status=502)
    with pytest.raises(GitHubServerError):
        await app.redeliver(recent["id"])
    # A POST that failed with a 5xx may have taken effect: it is not repeated on its own.
    assert [call.status for call in gh.calls_to(REDELIVER)] == [422, 404, 403, 502]


async def test_listing_is_retried_on_5xx_and_then_reported(
    gh: GitHubEmulator, app: GitHubApp
) -> None:
    gh.add_hook_delivery()
    gh.fail(LIST, status=502, times=2)
    assert len((await app.list_hook_deliveries()).deliveries) == 1

    gh.fail(LIST, status=503, times=10)
    with pytest.raises(GitHubServerError, match="503"):
        await app.list_hook_deliveries()


async def test_the_app_jwt_is_required(gh: GitHubEmulator, key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    stranger = GitHubApp(app_id=APP_ID, private_key=pem, base_url=gh.url, retry_scale=0.001)
    with pytest.raises(GitHubPermissionDenied):
        await stranger.list_hook_deliveries()


def test_served_deliveries_match_the_hand_written_description(gh: GitHubEmulator) -> None:
    gh.add_hook_delivery(action=None, installation_id=None, repository_id=None, status_code=0)
    gh.add_hook_delivery(status_code=200)
    supplement = json.loads(SUPPLEMENT_PATH.read_text(encoding="utf-8"))
    schema = supplement["components"]["schemas"]["deploybot-hook-delivery-item"]
    nullable = {"action", "installation_id", "repository_id"}
    for delivery in gh.hook_deliveries():
        assert set(delivery) == set(schema["properties"])
        for name, value in delivery.items():
            if value is None:
                assert name in nullable
                continue
            kind = dict(schema["properties"][name])
            kind.pop("nullable", None)
            assert not list(Draft4Validator(kind).iter_errors(value)), name


def test_the_supplement_adds_only_what_the_corpus_lacks(corpora: Path) -> None:
    corpus = json.loads(default_spec_path().read_text(encoding="utf-8"))
    supplement = json.loads(SUPPLEMENT_PATH.read_text(encoding="utf-8"))
    assert "Hand-written" in supplement["info"]["description"]

    def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
        # A path the corpus has may gain another method (GET beside its POST), nothing more.
        return {(path, method) for path, item in document["paths"].items() for method in item}

    def operation_ids(document: dict[str, Any]) -> set[str]:
        return {op["operationId"] for item in document["paths"].values() for op in item.values()}

    assert not operations(supplement) & operations(corpus)
    assert not operation_ids(supplement) & operation_ids(corpus)
    assert not supplement["components"]["schemas"].keys() & corpus["components"]["schemas"]


def test_served_comments_match_the_hand_written_description(gh: GitHubEmulator) -> None:
    gh.add_comment("acme", "api", 5, "listed")
    supplement = json.loads(SUPPLEMENT_PATH.read_text(encoding="utf-8"))
    item = supplement["components"]["schemas"]["deploybot-issue-comment-item"]
    user = dict(item["properties"]["user"])
    user.pop("nullable")
    schema = {**item, "properties": {**item["properties"], "user": user}}
    (comment,) = gh.comments("acme", "api", 5)
    assert list(Draft4Validator(schema).iter_errors(comment)) == []
