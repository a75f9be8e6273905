"""Structured logs (JSON or console) for our code and every library, with secrets redacted.

Redaction is the last step before rendering, after exceptions are formatted, so a token in
a traceback, a library's debug line or an exception message is caught as well.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

import structlog

REDACTED = "[REDACTED]"

# Credentials whose shape is known even when they are not ours (installation tokens, JWTs).
_CREDENTIAL_SHAPES = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[^\"']*"
    r"|\bxox[abposre]-[0-9A-Za-z-]{6,}"
    r"|\bxapp-[0-9A-Za-z-]{6,}"
    r"|\b(?:ghs|ghp|gho|ghu|ghr)_[0-9A-Za-z]{16,}"
    r"|\bgithub_pat_[0-9A-Za-z_]{20,}"
    r"|\beyJ[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]*",
    re.DOTALL,
)


class Redactor:
    """A structlog processor that replaces configured secrets and credential shapes."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        # A PEM's body lines are secret on their own too (a library may log one line).
        pem_lines = {
            line.strip()
            for s in values
            if "PRIVATE KEY" in s
            for line in s.splitlines()
            if len(line.strip()) >= 16 and "-----" not in line
        }
        ordered = sorted(set(values) | pem_lines, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def redact(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        return _CREDENTIAL_SHAPES.sub(REDACTED, text)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set):
            return [self._clean(v) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self.redact(repr(value) if not isinstance(value, BaseException) else str(value))

    def __call__(self, _logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict.pop("color_message", None)  # uvicorn's ANSI duplicate of "event"
        return {key: self._clean(value) for key, value in event_dict.items()}


def configure_logging(
    *, secrets: Iterable[str], fmt: str | None = None, level: int = logging.INFO
) -> None:
    """Route structlog and stdlib logging (uvicorn, slack-bolt, githubkit) through one renderer."""
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    redactor = Redactor(secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    structlog.configure(
        # Filtered first: a debug line below the level costs a comparison, not a rendering.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
