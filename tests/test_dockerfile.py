"""The Dockerfile's structure, read instruction by instruction.

No Docker engine runs where these tests run, so the image is never built here: these
checks pin down what a build would rely on (layer order, user, health check, volume).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("bot", "integrations", "storage")


def instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def index_of(predicate, items=None) -> int:
    items = instructions() if items is None else items
    for i, (keyword, arguments) in enumerate(items):
        if predicate(keyword, arguments):
            return i
    raise AssertionError("no such instruction")


def python_code(arguments: str) -> str:
    """The program of a `python -c` in a shell-form RUN or an exec-form CMD."""
    if arguments.startswith("["):
        words = json.loads(arguments)
    else:
        words = shlex.split(arguments.split("&&")[0].split(">")[0])
    return words[words.index("-c") + 1]


def test_base_image_is_slim_python_311():
    keyword, image = instructions()[0]
    assert keyword == "FROM"
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", image), image
    assert sum(k == "FROM" for k, _ in instructions()) == 1


def test_dependencies_are_installed_in_a_layer_before_the_source():
    items = instructions()
    manifest_copy = index_of(
        lambda k, a: k == "COPY" and "pyproject.toml" in a and "constraints.txt" in a, items
    )
    deps = index_of(lambda k, a: k == "RUN" and "pip install -c constraints.txt" in a, items)
    first_source = index_of(
        lambda k, a: k == "COPY" and any(a.split()[0] == s for s in SOURCES), items
    )
    project = index_of(lambda k, a: k == "RUN" and "pip install --no-deps ." in a, items)
    source_copies = [i for i, (k, a) in enumerate(items) if k == "COPY" and a.split()[0] in SOURCES]

    assert manifest_copy < deps < first_source
    assert {items[i][1].split()[0] for i in source_copies} == set(SOURCES)
    assert max(source_copies) < project
    # Nothing between the manifests and the dependency install may invalidate that layer.
    assert all(k != "COPY" for k, _ in items[manifest_copy + 1 : deps])


def test_the_dependency_list_is_read_from_pyproject(tmp_path):
    run = next(a for k, a in instructions() if k == "RUN" and "tomllib" in a)
    (tmp_path / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())

    printed = subprocess.run(
        [sys.executable, "-c", python_code(run)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert [line for line in printed if line] == pyproject["project"]["dependencies"]


def test_runs_as_a_non_root_user_created_in_the_image():
    items = instructions()
    users = [(i, a) for i, (k, a) in enumerate(items) if k == "USER"]
    start = index_of(lambda k, a: k in ("CMD", "ENTRYPOINT"), items)

    assert users, "no USER instruction"
    last_index, user = users[-1]
    assert last_index < start
    assert user.split(":")[0] not in ("root", "0")
    created = rf"useradd\b[^&]*\s{re.escape(user)}\s*(&&|$)"
    assert any(k == "RUN" and re.search(created, a) for k, a in items), "USER not created"


def test_data_volume_is_owned_by_that_user():
    items = instructions()
    user = [a for k, a in items if k == "USER"][-1]
    chown = index_of(lambda k, a: k == "RUN" and re.search(rf"chown {user}(:\S+)? /data", a), items)
    volume = index_of(lambda k, a: k == "VOLUME" and a.strip('[]" ') == "/data", items)

    assert chown < volume
    env = " ".join(a for k, a in items if k == "ENV")
    assert "DATABASE_URL=sqlite:////data/deploybot.db" in env.split()


def test_serves_on_8080_with_deploybot_serve():
    items = instructions()
    entrypoint = [json.loads(a) for k, a in items if k == "ENTRYPOINT"]
    cmd = [json.loads(a) for k, a in items if k == "CMD"]

    assert ("EXPOSE", "8080") in items
    assert (entrypoint[-1] if entrypoint else []) + (cmd[-1] if cmd else []) == [
        "deploybot",
        "serve",
    ]


def test_healthcheck_probes_healthz_with_python():
    [(_, healthcheck)] = [(k, a) for k, a in instructions() if k == "HEALTHCHECK"]
    _, _, command = healthcheck.partition("CMD ")
    code = python_code(command.strip())

    assert "/healthz" in code and "urllib" in code
    assert "curl" not in healthcheck and "wget" not in healthcheck
    compile(code, "<healthcheck>", "exec")


def dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: `**` spans directories, `*` and `?` stay within one."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        regex = dockerignore_regex(pattern.removeprefix("!").rstrip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not pattern.startswith("!")
    return ignored


def test_everything_copied_is_in_the_build_context():
    copied: list[str] = []
    for keyword, arguments in instructions():
        if keyword == "COPY":
            words = [w for w in arguments.split() if not w.startswith("--")]
            copied.extend(words[:-1])
    for source in copied:
        assert (ROOT / source).exists(), source
        files = [ROOT / source] if (ROOT / source).is_file() else (ROOT / source).rglob("*.*")
        for path in files:
            relative = path.relative_to(ROOT).as_posix()
            if "__pycache__" not in relative and path.is_file():
                assert not dockerignored(relative), relative


@pytest.mark.parametrize(
    "path", [".env", ".venv/bin/python", ".git/HEAD", "deploybot.db", "key.pem", "tests/x.py",
             "bot/__pycache__/app.cpython-311.pyc", "deploybot.egg-info/PKG-INFO"],
)  # fmt: skip
def test_secrets_and_local_state_stay_out_of_the_build_context(path):
    assert dockerignored(path)
