"""Settings: exactly CONTRACT §2, errors that name the variable and never show a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import Settings, SettingsError, load_settings
from tests.conftest import BOT_TOKEN, SIGNING_SECRET, WEBHOOK_SECRET

CONTRACT_VARIABLES = {
    "DATABASE_URL",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_API_URL",
    "GITHUB_APP_ID",
    "GITHUB_WEBHOOK_SECRET",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_APP_PRIVATE_KEY_FILE",
    "GITHUB_API_URL",
    "DEPLOYBOT_API_TOKEN",
    "DEPLOYBOT_OIDC_ISSUER",
    "DEPLOYBOT_OIDC_AUDIENCE",
    "DEPLOYBOT_TICK_SECONDS",
    "DEPLOYBOT_CONFIG_PATH",
    "DEPLOYBOT_LOG_FORMAT",
    # CONTRACT §1: serve's defaults
    "DEPLOYBOT_HOST",
    "DEPLOYBOT_PORT",
    # Beyond the contract, documented in the README: how long a dead replica's work waits.
    "DEPLOYBOT_LEASE_SECONDS",
}


def test_the_settings_are_exactly_the_contracts() -> None:
    assert {name.upper() for name in Settings.model_fields} == CONTRACT_VARIABLES


def test_defaults(make_settings) -> None:
    settings = make_settings()
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.github_api_url == "https://api.github.com"
    assert settings.deploybot_oidc_issuer == "https://token.actions.githubusercontent.com"
    assert settings.deploybot_oidc_audience == "deploybot"
    assert settings.deploybot_tick_seconds == 5
    assert settings.deploybot_config_path == ".github/deploybot.yml"
    assert (settings.deploybot_host, settings.deploybot_port) == ("0.0.0.0", 8080)
    assert settings.socket_mode is False


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SLACK_BOT_TOKEN": None}, "SLACK_BOT_TOKEN"),
        ({"GITHUB_APP_ID": None}, "GITHUB_APP_ID"),
        ({"GITHUB_APP_ID": "twelve"}, "GITHUB_APP_ID"),
        ({"GITHUB_WEBHOOK_SECRET": None}, "GITHUB_WEBHOOK_SECRET"),
        ({"GITHUB_APP_PRIVATE_KEY": None}, "GITHUB_APP_PRIVATE_KEY"),
        ({"GITHUB_APP_PRIVATE_KEY": "not a key"}, "GITHUB_APP_PRIVATE_KEY"),
        ({"SLACK_SIGNING_SECRET": None}, "SLACK_SIGNING_SECRET"),
        ({"SLACK_APP_TOKEN": "xoxb-wrong-kind"}, "SLACK_APP_TOKEN"),
        ({"SLACK_API_URL": "slack.com/api"}, "SLACK_API_URL"),
        ({"GITHUB_API_URL": "ftp://ghe"}, "GITHUB_API_URL"),
        ({"DATABASE_URL": "mysql://db/x"}, "DATABASE_URL"),
        ({"DEPLOYBOT_TICK_SECONDS": "-1"}, "DEPLOYBOT_TICK_SECONDS"),
        ({"DEPLOYBOT_TICK_SECONDS": "soon"}, "DEPLOYBOT_TICK_SECONDS"),
        ({"DEPLOYBOT_LEASE_SECONDS": "0"}, "DEPLOYBOT_LEASE_SECONDS"),
        ({"DEPLOYBOT_LOG_FORMAT": "xml"}, "DEPLOYBOT_LOG_FORMAT"),
        ({"DEPLOYBOT_PORT": "99999"}, "DEPLOYBOT_PORT"),
    ],
)
def test_errors_name_the_variable_in_one_line(
    make_settings, settings_env, monkeypatch, env, variable
) -> None:
    with pytest.raises(SettingsError) as caught:
        for key, value in env.items():
            if value is None:
                settings_env.pop(key)
        make_settings(**{k: v for k, v in env.items() if v is not None})
    message = str(caught.value)
    assert message.startswith(f"{variable}:"), message
    assert "\n" not in message
    for secret in (WEBHOOK_SECRET, BOT_TOKEN, SIGNING_SECRET):
        assert secret not in message


def test_private_key_from_a_file_and_with_escaped_newlines(
    make_settings, app_private_key_pem: str, tmp_path: Path, settings_env
) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(app_private_key_pem)
    settings_env.pop("GITHUB_APP_PRIVATE_KEY")
    assert (
        make_settings(GITHUB_APP_PRIVATE_KEY_FILE=str(key_file)).private_key_pem()
        == app_private_key_pem
    )
    one_line = app_private_key_pem.replace("\n", "\\n")
    assert make_settings(GITHUB_APP_PRIVATE_KEY=one_line).private_key_pem() == app_private_key_pem


def test_missing_key_file_is_named(make_settings, settings_env) -> None:
    settings_env.pop("GITHUB_APP_PRIVATE_KEY")
    with pytest.raises(SettingsError, match=r"^GITHUB_APP_PRIVATE_KEY_FILE: cannot read"):
        make_settings(GITHUB_APP_PRIVATE_KEY_FILE="/nonexistent/app.pem")


def test_socket_mode_needs_no_signing_secret(make_settings, settings_env) -> None:
    settings_env.pop("SLACK_SIGNING_SECRET")
    settings = make_settings(SLACK_APP_TOKEN="xapp-1-A111-222-abcdef")
    assert settings.socket_mode and settings.slack_signing_secret is None


def test_secrets_never_show_in_repr_or_str(make_settings, settings_env) -> None:
    settings = make_settings(
        DEPLOYBOT_API_TOKEN="api-token-value-123", DATABASE_URL="postgresql://u:dbpassword99@h/d"
    )
    shown = repr(settings) + str(settings) + str(settings.model_dump())
    for value in (
        settings_env["SLACK_BOT_TOKEN"],
        settings_env["GITHUB_WEBHOOK_SECRET"],
        settings_env["SLACK_SIGNING_SECRET"],
        "api-token-value-123",
        "MII",
    ):  # the PEM body
        assert value not in shown
    assert set(settings.secret_values()) >= {
        settings_env["SLACK_BOT_TOKEN"],
        "api-token-value-123",
        "dbpassword99",
    }


def test_dotenv_file_is_read(make_settings, settings_env, tmp_path: Path, monkeypatch) -> None:
    settings_env.pop("GITHUB_APP_ID")
    make_settings_env = make_settings  # clears the environment, sets the rest
    with pytest.raises(SettingsError):
        make_settings_env()
    env_file = tmp_path / ".env"
    env_file.write_text("GITHUB_APP_ID=777\nDEPLOYBOT_TICK_SECONDS=0.5\n")
    settings = load_settings(env_file=env_file)
    assert (settings.github_app_id, settings.deploybot_tick_seconds) == (777, 0.5)


@pytest.mark.parametrize(
    "variable",
    ["GITHUB_WEBHOOK_SECRET", "SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "DEPLOYBOT_API_TOKEN"],
)
def test_blank_secrets_are_refused(make_settings, variable: str) -> None:
    # A blank webhook secret would accept any body "signed" with an empty key.
    with pytest.raises(SettingsError, match=rf"^{variable}: must not be empty$"):
        make_settings(**{variable: "  "})


def test_migrate_needs_only_the_database(monkeypatch, tmp_path: Path) -> None:
    from bot.settings import DatabaseSettings

    for key in ("SLACK_BOT_TOKEN", "GITHUB_APP_ID", "GITHUB_WEBHOOK_SECRET"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    settings = load_settings(env_file=None, kind=DatabaseSettings)
    assert settings.database_url.endswith("x.db")
