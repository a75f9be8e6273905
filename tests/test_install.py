"""The Dockerfile's install steps, replayed in a fresh venv (no Docker engine runs here).

Dependencies from pyproject's runtime list pinned by constraints.txt, then the project
itself, non-editable and without dependencies, from a copy of exactly the build context
`.dockerignore` lets through. The installed `deploybot` must then work from elsewhere:
migrations, the Slack manifest and the emulators come from the package, not the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTEXT = ("pyproject.toml", "constraints.txt", "README.md", "bot", "integrations", "storage")


def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.timeout(900)
def test_the_image_install_steps_give_a_working_deploybot(
    tmp_path: Path, settings_env: dict[str, str]
) -> None:
    context = tmp_path / "context"
    context.mkdir()
    for name in CONTEXT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, context / name)
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python, deploybot = venv / "bin" / "python", venv / "bin" / "deploybot"

    requirements = tomllib.loads((context / "pyproject.toml").read_text())["project"][
        "dependencies"
    ]
    (context / "requirements.txt").write_text("\n".join(requirements))
    pip = (python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check")
    _run(*pip, "-c", "constraints.txt", "-r", "requirements.txt", cwd=context)
    _run(*pip, "--no-deps", ".", cwd=context)
    shutil.rmtree(context)  # nothing may be read from the source tree any more

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "GITHUB_", "DEPLOY"))}
    env.update(settings_env, DATABASE_URL=f"sqlite:///{elsewhere / 'data' / 'deploybot.db'}")
    assert "database at head" in _run(deploybot, "migrate", cwd=elsewhere, env=env)
    assert (elsewhere / "data" / "deploybot.db").exists()
    assert "/slack/events" in _run(deploybot, "manifest", "slack", cwd=elsewhere, env=env)
    _run(
        python,
        "-c",
        "import integrations.emulators.github, integrations.emulators.slack",
        cwd=elsewhere,
        env=env,
    )
    tests_leaked = _run(
        python,
        "-c",
        "import importlib.util as u; print(u.find_spec('tests'))",
        cwd=elsewhere,
        env=env,
    )
    assert tests_leaked.strip() == "None"
