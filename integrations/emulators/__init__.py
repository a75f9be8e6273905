"""Emulators of the outside world (GitHub, Slack): real HTTP servers on loopback."""

from typing import Any

__all__ = ["GitHubEmulator"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so `python -m integrations.emulators.github` does not find the
    # module already imported by its package (runpy warns and runs a second copy).
    if name == "GitHubEmulator":
        from integrations.emulators.github import GitHubEmulator

        return GitHubEmulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
