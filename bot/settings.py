"""Operator settings: the environment variables of CONTRACT §2 (also read from `.env`).

Settings are read once by the CLI and passed down; nothing here is a module global.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, TypeVar

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable, never its value."""


class DatabaseSettings(BaseSettings):
    """Just `DATABASE_URL`: enough for `deploybot migrate`."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = Field("sqlite:///./deploybot.db")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value


class Settings(DatabaseSettings):
    """Everything an operator configures. Secrets are `SecretStr`: never logged or repr'd."""

    slack_bot_token: SecretStr = ...
    slack_signing_secret: SecretStr | None = Field(None)
    slack_app_token: SecretStr | None = Field(None)
    slack_api_url: str = Field("https://slack.com/api/")

    github_app_id: int = ...
    github_webhook_secret: SecretStr = ...
    github_app_private_key: SecretStr | None = Field(None)
    github_app_private_key_file: Path | None = Field(None)
    github_api_url: str = Field("https://api.github.com")

    deploybot_api_token: SecretStr | None = Field(None)
    deploybot_oidc_issuer: str = Field(
        "https://token.actions.githubusercontent.com",
    )
    deploybot_oidc_audience: str = Field("deploybot")
    deploybot_tick_seconds: float = Field(5.0, gt=0)
    deploybot_lease_seconds: float = Field(60.0, gt=0)
    deploybot_config_path: str = Field(".github/deploybot.yml")
    deploybot_log_format: Literal["json", "console"] | None = Field(None)
    deploybot_host: str = Field("0.0.0.0")  # noqa: S104
    deploybot_port: int = Field(8080, ge=0, le=65535)

    @field_validator(
        "slack_bot_token",
        "slack_signing_secret",
        "slack_app_token",
        "github_webhook_secret",
        "github_app_private_key",
        "deploybot_api_token",
    )
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty webhook secret would make every body "signed"; refuse it at start-up.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("slack_api_url", "github_api_url", "deploybot_oidc_issuer")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp-")
        return value

    @model_validator(mode="after")
    def _credentials_complete(self) -> Settings:
        if self.slack_app_token is None and self.slack_signing_secret is None:
            raise _SettingProblem("SLACK_SIGNING_SECRET", "required unless SLACK_APP_TOKEN is set")
        if self.github_app_private_key is None and self.github_app_private_key_file is None:
            raise _SettingProblem(
                "GITHUB_APP_PRIVATE_KEY",
                "set GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_FILE",
            )
        self._check_private_key()
        return self

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    def private_key_pem(self) -> str:
        """The App's PEM key, from the inline variable or the file."""
        if self.github_app_private_key is not None:
            # Inline keys are often pasted into one line with literal "\n".
            return self.github_app_private_key.get_secret_value().replace("\\n", "\n")
        assert self.github_app_private_key_file is not None
        return self.github_app_private_key_file.read_text()

    def _check_private_key(self) -> None:
        name = (
            "GITHUB_APP_PRIVATE_KEY"
            if self.github_app_private_key is not None
            else "GITHUB_APP_PRIVATE_KEY_FILE"
        )
        try:
            key = load_pem_private_key(self.private_key_pem().encode(), password=None)
        except OSError as exc:
            raise _SettingProblem(name, f"cannot read the file ({exc.strerror})") from None
        except (ValueError, TypeError):
            raise _SettingProblem(name, "is not a PEM private key") from None
        if not isinstance(key, RSAPrivateKey):
            raise _SettingProblem(name, "must be the App's RSA private key")

    def secret_values(self) -> list[str]:
        """Every configured secret, for log redaction."""
        values = [
            s.get_secret_value()
            for s in (
                self.slack_bot_token,
                self.slack_signing_secret,
                self.slack_app_token,
                self.github_webhook_secret,
                self.github_app_private_key,
                self.deploybot_api_token,
            )
            if s is not None and s.get_secret_value()
        ]
        if self.github_app_private_key_file is not None:
            values.append(self.private_key_pem())
        values.extend(_database_password(self.database_url))
        return values


class _SettingProblem(ValueError):
    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


def _database_password(url: str) -> list[str]:
    from sqlalchemy.engine import make_url

    try:
        password = make_url(url).password
    except Exception:
        return []
    return [password] if password else []


AnySettings = TypeVar("AnySettings", bound=DatabaseSettings)


def load_settings(
    env_file: str | os.PathLike[str] | None = ".env",
    *,
    kind: type[AnySettings] = Settings,  # type: ignore[assignment]
) -> AnySettings:
    """Read the settings, raising `SettingsError` with one line naming the first bad variable."""
    try:
        return kind(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    error = exc.errors(include_input=False, include_url=False)[0]
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _SettingProblem):
        return f"{ctx_error.variable}: {ctx_error.problem}"
    loc = error.get("loc") or ()
    variable = str(loc[0]).upper() if loc else "settings"
    if error.get("type") == "missing":
        return f"{variable}: required but not set"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{variable}: {message}"
