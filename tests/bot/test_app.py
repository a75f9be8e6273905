"""The composition root wires settings into the outside world's clients."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.app import create_app
from integrations.emulators.github import GitHubEmulator


async def test_github_client_uses_the_configured_app_key_and_api_url(
    make_settings, app_private_key: rsa.RSAPrivateKey
) -> None:
    public = app_private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with GitHubEmulator(app_id=4242, app_public_key=public, base_path="/api/v3") as gh:
        app = create_app(make_settings(GITHUB_APP_ID="4242", GITHUB_API_URL=gh.url))
        github = app.state.services.github
        assert (await github.get_app()).id
        repository = await github.installation(1).get_repository(owner="acme", repo="api")
        assert repository.full_name
        # The JWT was signed with the configured key (the emulator verified it), and every
        # call, the token exchange included, went under the GHES base path (else unrouted).
        assert gh.tokens_issued == 1
        assert [call.operation_id for call in gh.calls] == [
            "apps/get-authenticated",
            "apps/create-installation-access-token",
            "repos/get",
        ]
        assert gh.invalid_requests == []
