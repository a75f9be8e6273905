"""Log redaction: configured secrets and credential shapes never reach the output."""

from __future__ import annotations

import logging

import structlog

from bot.logs import REDACTED, Redactor, configure_logging


def test_redacts_configured_secrets_and_known_credential_shapes(app_private_key_pem: str) -> None:
    redactor = Redactor(["webhook-secret-value", app_private_key_pem])
    pem_line = app_private_key_pem.splitlines()[3]
    text = (
        "secret=webhook-secret-value token=ghs_16C7e42F292c6912E7710c838347Ae178B4a "
        "slack=xoxb-1234567890-abcdefghij app=xapp-1-A0-123-abc123 "
        "jwt=eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjMifQ.c2lnbmF0dXJl "
        f"line={pem_line} pem={app_private_key_pem}"
    )
    cleaned = redactor.redact(text)
    for leaked in (
        "webhook-secret-value",
        "ghs_16C7",
        "xoxb-123",
        "xapp-1",
        "eyJhbGci",
        pem_line,
        "BEGIN RSA PRIVATE KEY",
    ):
        assert leaked not in cleaned
    assert cleaned.count(REDACTED) >= 6


def test_short_values_are_not_treated_as_secrets() -> None:
    # An empty or 1-character secret must not redact every log line.
    assert Redactor(["", "a"]).redact("a normal line") == "a normal line"


def test_configured_logging_redacts_structlog_stdlib_and_exceptions(capsys) -> None:
    configure_logging(secrets=["sup3r-secret-value"], fmt="json")
    try:
        structlog.get_logger("t").info(
            "event", token="sup3r-secret-value", nested={"k": ["sup3r-secret-value"]}
        )
        logging.getLogger("some.library").warning("library says %s", "sup3r-secret-value")
        try:
            raise RuntimeError("failed with sup3r-secret-value")
        except RuntimeError:
            structlog.get_logger("t").exception("boom")
        err = capsys.readouterr().err
        assert "sup3r-secret-value" not in err
        assert err.count(REDACTED) >= 4
        assert '"logger": "some.library"' in err
    finally:
        logging.getLogger().handlers.clear()
        structlog.reset_defaults()
