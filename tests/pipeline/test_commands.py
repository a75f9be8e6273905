"""The command parsers: PR comments and Slack `/deploy` text (CONTRACT §5)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.pipeline.commands import (
    COMMENT_USAGE,
    SLACK_USAGE,
    Command,
    CommandError,
    Flag,
    Verb,
    is_help,
    parse_comment,
    parse_slash,
    render_comment,
    render_slash,
)

FORCE, QUEUE, WAIT, DRY_RUN = Flag.FORCE, Flag.QUEUE, Flag.WAIT, Flag.DRY_RUN


def deploy(env: str, *flags: Flag, **fields: str) -> Command:
    return Command(Verb.DEPLOY, environment=env, flags=frozenset(flags), **fields)


def on(verb: Verb, env: str | None = None, *flags: Flag, **fields: str) -> Command:
    return Command(verb, environment=env, flags=frozenset(flags), **fields)


def slack_escaped(text: str) -> str:
    """What Slack sends for typed text: it escapes exactly these three characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------- PR comments

COMMENTS = [
    # the contract's forms
    ("/deploy stage", deploy("stage")),
    ("/deploy status", on(Verb.STATUS)),
    ("/deploy help", on(Verb.HELP)),
    ("/deploy pause stage", on(Verb.PAUSE, "stage")),
    ("/deploy resume stage", on(Verb.RESUME, "stage")),
    ("/rollback production", on(Verb.ROLLBACK, "production")),
    ("/approve production", on(Verb.APPROVE, "production")),
    ("/reject production", on(Verb.REJECT, "production")),
    (
        "/reject production breaks the login page",
        on(Verb.REJECT, "production", reason="breaks the login page"),
    ),
    ("/lock production", on(Verb.LOCK, "production")),
    (
        "/lock production DB migration, back at 3",
        on(Verb.LOCK, "production", reason="DB migration, back at 3"),
    ),
    ("/unlock production", on(Verb.UNLOCK, "production")),
    # flags, anywhere after the command word, in any case, with typographic dashes
    ("/deploy stage --force", deploy("stage", FORCE)),
    ("/deploy --dry-run stage", deploy("stage", DRY_RUN)),
    (
        "/deploy stage --force --queue --wait --dry-run",
        deploy("stage", FORCE, QUEUE, WAIT, DRY_RUN),
    ),
    ("/deploy stage --force --force", deploy("stage", FORCE)),
    ("/deploy stage --DRY-RUN", deploy("stage", DRY_RUN)),
    ("/deploy stage --dry_run", deploy("stage", DRY_RUN)),
    ("/deploy stage --dryrun", deploy("stage", DRY_RUN)),
    ("/deploy stage -queue", deploy("stage", QUEUE)),
    ("/deploy stage \u2014force", deploy("stage", FORCE)),
    ("/deploy stage \u2013wait", deploy("stage", WAIT)),
    (
        "/rollback production --force --queue --dry-run",
        on(Verb.ROLLBACK, "production", FORCE, QUEUE, DRY_RUN),
    ),
    # case and whitespace
    ("/Deploy STAGE", deploy("stage")),
    ("/DEPLOY Status", on(Verb.STATUS)),
    ("/ROLLBACK Production", on(Verb.ROLLBACK, "production")),
    ("/reject Production Not YET", on(Verb.REJECT, "production", reason="Not YET")),
    ("   /deploy    stage   ", deploy("stage")),
    ("\t/deploy\tstage\t", deploy("stage")),
    ("/deploy\u00a0stage", deploy("stage")),
    ("\n\n  /deploy stage\n", deploy("stage")),
    ("\ufeff/deploy stage", deploy("stage")),
    # only the first line counts, whatever the line endings
    ("/deploy stage\r\nand then production", deploy("stage")),
    ("/deploy stage\rmore", deploy("stage")),
    ("/reject production\r\nThe migration is not reversible.", on(Verb.REJECT, "production")),
    ("/lock production because\n/unlock production", on(Verb.LOCK, "production", reason="because")),
    # words after the arguments are conversation
    ("/deploy stage please", deploy("stage")),
    ("/deploy stage please --force", deploy("stage", FORCE)),
    ("/deploy stage production", deploy("stage")),
    ("/deploy stage \U0001f680", deploy("stage")),
    ("/approve production LGTM", on(Verb.APPROVE, "production")),
    ("/unlock production thanks!", on(Verb.UNLOCK, "production")),
    ("/deploy status of everything", on(Verb.STATUS)),
    ("/deploy help me please", on(Verb.HELP)),
    ("/deploy pause stage for a bit", on(Verb.PAUSE, "stage")),
    # punctuation and quotes around the environment are prose
    ("/deploy stage!", deploy("stage")),
    ("/deploy stage.", deploy("stage")),
    ("/deploy stage, please", deploy("stage")),
    ('/deploy "stage"', deploy("stage")),
    ("/deploy <stage>", deploy("stage")),
    ("/deploy \u201cstage\u201d", deploy("stage")),
    ("/deploy `stage`", deploy("stage")),
    ("/deploy stage --force!", deploy("stage", FORCE)),
    ("/deploy status!", on(Verb.STATUS)),
    ("/deploy help?", on(Verb.HELP)),
    ("/lock production: migrating", on(Verb.LOCK, "production", reason="migrating")),
    # markdown around the command
    ("`/deploy stage`", deploy("stage")),
    ("``/deploy stage``", deploy("stage")),
    ("`/deploy stage` please", deploy("stage")),
    ("**/deploy stage**", deploy("stage")),
    ("  `/deploy stage --force`  ", deploy("stage", FORCE)),
    # environment names
    ("/deploy us-east-1", deploy("us-east-1")),
    ("/deploy eu_west.2", deploy("eu_west.2")),
    ("/deploy 42", deploy("42")),
    ("/deploy canary-", deploy("canary-")),
    ("/deploy canary_", deploy("canary_")),
    # `/deploy <verb>` means `/<verb>`, as people used to the Slack form type it
    ("/deploy rollback production", on(Verb.ROLLBACK, "production")),
    ("/deploy approve production", on(Verb.APPROVE, "production")),
    ("/deploy reject production too risky", on(Verb.REJECT, "production", reason="too risky")),
    ("/deploy lock production", on(Verb.LOCK, "production")),
    ("/deploy unlock production", on(Verb.UNLOCK, "production")),
    ("/deploy --force rollback production", on(Verb.ROLLBACK, "production", FORCE)),
    # `to` is optional, and names an environment that looks like a subcommand
    ("/deploy to stage", deploy("stage")),
    ("/deploy to status", deploy("status")),
    ("/deploy to to", deploy("to")),
    ("/deploy --force to help", deploy("help", FORCE)),
    ("/deploy to link", deploy("link")),
    # confirming a Slack `/deploy link <github-login>`: the code as typed (storage forgives case)
    ("/deploy link 7K3QD9XW2M", on(Verb.LINK, code="7K3QD9XW2M")),
    ("/deploy link 7k3qd-9xw2m", on(Verb.LINK, code="7k3qd-9xw2m")),
    ("/Deploy LINK `7K3QD9XW2M`.", on(Verb.LINK, code="7K3QD9XW2M")),
    ("`/deploy link 7K3QD9XW2M`", on(Verb.LINK, code="7K3QD9XW2M")),
    ("/deploy link 7K3QD9XW2M thanks!", on(Verb.LINK, code="7K3QD9XW2M")),
    # help
    ("/deploy --help", on(Verb.HELP)),
    ("/deploy -h", on(Verb.HELP)),
    ("/deploy ?", on(Verb.HELP)),
    ("/DEPLOY HELP", on(Verb.HELP)),
    # free text keeps what it says, dashes and all
    ("/lock production --see #12", on(Verb.LOCK, "production", reason="--see #12")),
    ("/reject production   two   spaces  ", on(Verb.REJECT, "production", reason="two   spaces")),
    (
        "/reject production `rm -rf` is scary",
        on(Verb.REJECT, "production", reason="`rm -rf` is scary"),
    ),
]


@pytest.mark.parametrize(("body", "expected"), COMMENTS, ids=[c[0] for c in COMMENTS])
def test_comment_commands(body: str, expected: Command) -> None:
    assert parse_comment(body) == expected


NOT_COMMANDS = [
    "",
    "   \n\t ",
    "LGTM",
    "Can someone /deploy stage for me?",
    "I'll /deploy stage later",
    "Looks good.\n/deploy stage",
    "> /deploy stage",
    ">/deploy production --force",
    "  > /rollback production",
    "> `/deploy stage`",
    "```\n/deploy stage\n```",
    "```bash",
    "/deploystage",
    "/deploy-stage",
    "/deployment stage",
    "/deploy: stage",
    "/lgtm",
    "/help",
    "/status",
    "/pause stage",
    "- /deploy stage",
    "# /deploy stage",
    "deploy stage",
    "@deploybot deploy stage",
    "/",
]


@pytest.mark.parametrize("body", NOT_COMMANDS)
def test_comments_that_are_not_commands(body: str) -> None:
    assert parse_comment(body) is None


DEPLOY_USAGE = "Usage: `/deploy <env> [--force] [--queue] [--wait] [--dry-run]`"
ROLLBACK_USAGE = "Usage: `/rollback <env> [--force] [--queue] [--dry-run]`"
NOT_AN_ENV = (
    "is not an environment name: letters, digits, `-`, `_` and `.`, "
    "starting with a letter or digit."
)
ON_A_PR = (
    "is not an environment name. On a pull request, commands act on its repository and "
    "head commit: name only the environment."
)

CODE_USAGE = "Usage: `/deploy link <code>`"
NO_CODE = (
    "`/deploy link` needs the code deploybot showed you in Slack after "
    "`/deploy link <github-login>`."
)
BAD_CODE = (
    "That is not a link code: it is the letters and digits deploybot showed you in Slack "
    "after `/deploy link <github-login>`."
)

COMMENT_ERRORS = [
    ("/deploy", "`/deploy` needs an environment.", DEPLOY_USAGE),
    ("/deploy   \r\n stage", "`/deploy` needs an environment.", DEPLOY_USAGE),
    ("/deploy to", "`/deploy` needs an environment.", DEPLOY_USAGE),
    ("/deploy --force", "`/deploy` needs an environment.", DEPLOY_USAGE),
    ("/rollback", "`/rollback` needs an environment.", ROLLBACK_USAGE),
    ("/approve", "`/approve` needs an environment.", "Usage: `/approve <env>`"),
    ("/Reject", "`/reject` needs an environment.", "Usage: `/reject <env> [reason]`"),
    ("/lock", "`/lock` needs an environment.", "Usage: `/lock <env> [reason]`"),
    ("/unlock", "`/unlock` needs an environment.", "Usage: `/unlock <env>`"),
    ("/deploy pause", "`/deploy pause` needs an environment.", "Usage: `/deploy pause <env>`"),
    ("/deploy resume", "`/deploy resume` needs an environment.", "Usage: `/deploy resume <env>`"),
    (
        "/deploy stage --forse",
        "Unknown flag `--forse` (did you mean `--force`?). `/deploy` takes `--force`, "
        "`--queue`, `--wait`, `--dry-run`.",
        DEPLOY_USAGE,
    ),
    (
        "/deploy stage --dry-rnu",
        "Unknown flag `--dry-rnu` (did you mean `--dry-run`?). `/deploy` takes `--force`, "
        "`--queue`, `--wait`, `--dry-run`.",
        DEPLOY_USAGE,
    ),
    (
        "/deploy stage please --yolo",
        "Unknown flag `--yolo`. `/deploy` takes `--force`, `--queue`, `--wait`, `--dry-run`.",
        DEPLOY_USAGE,
    ),
    (
        "/deploy stage --force=yes",
        "Unknown flag `--force=yes` (did you mean `--force`?). `/deploy` takes `--force`, "
        "`--queue`, `--wait`, `--dry-run`.",
        DEPLOY_USAGE,
    ),
    (
        "/rollback production --wiat",
        "Unknown flag `--wiat`. `/rollback` takes `--force`, `--queue`, `--dry-run`.",
        ROLLBACK_USAGE,
    ),
    ("/rollback production --wait", "`--wait` does not apply to `/rollback`.", ROLLBACK_USAGE),
    (
        "/approve production --force",
        "`--force` does not apply to `/approve`.",
        "Usage: `/approve <env>`",
    ),
    (
        "/deploy status --force",
        "`--force` does not apply to `/deploy status`.",
        "Usage: `/deploy status`",
    ),
    (
        "/deploy pause stage --dry-run",
        "`--dry-run` does not apply to `/deploy pause`.",
        "Usage: `/deploy pause <env>`",
    ),
    (
        "/lock production --force",
        "`--force` does not apply to `/lock`.",
        "Usage: `/lock <env> [reason]`",
    ),
    (
        "/reject production risky --queue",
        "`--queue` does not apply to `/reject`.",
        "Usage: `/reject <env> [reason]`",
    ),
    ("/deploy st@ge", f"`st@ge` {ON_A_PR}", DEPLOY_USAGE),
    ("/deploy acme/api", f"`acme/api` {ON_A_PR}", DEPLOY_USAGE),
    ("/deploy stage@abc123", f"`stage@abc123` {ON_A_PR}", DEPLOY_USAGE),
    (
        "/deploy -stage",
        "Unknown flag `-stage`. `/deploy` takes `--force`, `--queue`, `--wait`, `--dry-run`.",
        DEPLOY_USAGE,
    ),
    ("/approve -production", f"`-production` {NOT_AN_ENV}", "Usage: `/approve <env>`"),
    ("/deploy st*ge", f"`st*ge` {NOT_AN_ENV}", DEPLOY_USAGE),
    ("/deploy \U0001f680", f"`\U0001f680` {NOT_AN_ENV}", DEPLOY_USAGE),
    ("/deploy :rocket:", f"`:rocket:` {NOT_AN_ENV}", DEPLOY_USAGE),
    ("/deploy <@U123>", f"`<@U123>` {ON_A_PR}", DEPLOY_USAGE),
    ("/deploy " + "a" * 300, f"`{'a' * 39}…` {NOT_AN_ENV}", DEPLOY_USAGE),
    ("/deploy link", NO_CODE, CODE_USAGE),
    ("/deploy link   \n 7K3QD9XW2M", NO_CODE, CODE_USAGE),
    ("/deploy link 7K3QD$9XW2M", BAD_CODE, CODE_USAGE),
    ("/deploy link -7K3QD9XW2M", BAD_CODE, CODE_USAGE),
    ("/deploy link " + "A" * 65, BAD_CODE, CODE_USAGE),
    ("/deploy link <@U0MONA>", BAD_CODE, CODE_USAGE),
    (
        "/deploy link 7K3QD9XW2M --force",
        "`--force` does not apply to `/deploy link`.",
        CODE_USAGE,
    ),
]


@pytest.mark.parametrize(
    ("body", "message", "usage"), COMMENT_ERRORS, ids=[c[0][:40] for c in COMMENT_ERRORS]
)
def test_comment_errors_say_what_was_wrong_and_the_right_form(
    body: str, message: str, usage: str
) -> None:
    error = parse_comment(body)
    assert isinstance(error, CommandError)
    assert (error.message, error.usage) == (message, usage)
    assert error.text == f"{message}\n{usage}"


def test_comment_error_names_the_verb_it_was_meant_to_be() -> None:
    error = parse_comment("/rollback")
    assert isinstance(error, CommandError) and error.verb is Verb.ROLLBACK
    error = parse_comment("/deploy link")
    assert isinstance(error, CommandError) and error.verb is Verb.LINK


def test_a_link_code_stays_out_of_reprs_and_errors() -> None:
    """A live code must not reach the logs, nor be quoted back on a public pull request."""
    command = parse_comment("/deploy link 7K3QD9XW2M")
    assert isinstance(command, Command) and command.code == "7K3QD9XW2M"
    assert "7K3QD9XW2M" not in repr(command)
    error = parse_comment("/deploy link 7K3QD9XW2M#")
    assert isinstance(error, CommandError) and "7K3QD9XW2M" not in error.text


def test_link_takes_a_login_in_slack_and_a_code_on_a_pull_request() -> None:
    assert parse_slash("link octocat") == Command(Verb.LINK, login="octocat")
    assert parse_comment("/deploy link octocat") == Command(Verb.LINK, code="octocat")
    assert "link" not in COMMENT_USAGE  # the Slack answer says what to type


# ------------------------------------------------------------------ Slack

ACME = {"repository": "acme/api"}

SLASH = [
    ("", on(Verb.HELP)),
    ("   ", on(Verb.HELP)),
    ("help", on(Verb.HELP)),
    ("HELP me please", on(Verb.HELP)),
    ("--help", on(Verb.HELP)),
    ("-h", on(Verb.HELP)),
    ("deploy help", on(Verb.HELP)),
    ("subscribe acme/api", on(Verb.SUBSCRIBE, **ACME)),
    ("unsubscribe acme/api", on(Verb.UNSUBSCRIBE, **ACME)),
    ("Subscribe Acme/API", on(Verb.SUBSCRIBE, repository="Acme/API")),
    ("acme/api to stage", deploy("stage", **ACME)),
    ("acme/api@main to stage", deploy("stage", repository="acme/api", ref="main")),
    ("acme/api@v1.2.3 to production", deploy("production", repository="acme/api", ref="v1.2.3")),
    (
        "acme/api@feature/login-page to stage",
        deploy("stage", repository="acme/api", ref="feature/login-page"),
    ),
    ("acme/api@3f2a9c1 to stage", deploy("stage", repository="acme/api", ref="3f2a9c1")),
    ("acme/api@Release-2026 to stage", deploy("stage", repository="acme/api", ref="Release-2026")),
    ("acme/api stage", deploy("stage", **ACME)),
    ("acme/api TO Stage", deploy("stage", **ACME)),
    ("deploy acme/api to stage", deploy("stage", **ACME)),
    ("acme/api to stage --force", deploy("stage", FORCE, **ACME)),
    ("--dry-run acme/api to stage", deploy("stage", DRY_RUN, **ACME)),
    ("acme/api --queue to --wait stage", deploy("stage", QUEUE, WAIT, **ACME)),
    ("acme/api to stage \u2014dry-run", deploy("stage", DRY_RUN, **ACME)),
    ("  acme/api   to\u00a0stage \n", deploy("stage", **ACME)),
    ("my-org/my.repo_2 to stage", deploy("stage", repository="my-org/my.repo_2")),
    ("acme/api.git to stage", deploy("stage", **ACME)),
    ("status acme/api", on(Verb.STATUS, **ACME)),
    ("rollback acme/api production", on(Verb.ROLLBACK, "production", **ACME)),
    (
        "rollback acme/api production --force --dry-run",
        on(Verb.ROLLBACK, "production", FORCE, DRY_RUN, **ACME),
    ),
    ("lock acme/api production", on(Verb.LOCK, "production", **ACME)),
    (
        "lock acme/api production Black Friday",
        on(Verb.LOCK, "production", reason="Black Friday", **ACME),
    ),
    ("unlock acme/api production", on(Verb.UNLOCK, "production", **ACME)),
    (
        "freeze acme/api until friday release week",
        on(Verb.FREEZE, until="friday", reason="release week", **ACME),
    ),
    (
        "freeze acme/api until 2026-12-01 holidays",
        on(Verb.FREEZE, until="2026-12-01", reason="holidays", **ACME),
    ),
    (
        "freeze acme/api UNTIL 2026-12-01T18:00 x",
        on(Verb.FREEZE, until="2026-12-01T18:00", reason="x", **ACME),
    ),
    (
        "freeze acme/api until 18:00 incident",
        on(Verb.FREEZE, until="18:00", reason="incident", **ACME),
    ),
    (
        "freeze acme/api until +2h incident #4",
        on(Verb.FREEZE, until="+2h", reason="incident #4", **ACME),
    ),
    (
        "freeze acme/api until Friday Q4 close",
        on(Verb.FREEZE, until="Friday", reason="Q4 close", **ACME),
    ),
    ("unfreeze acme/api", on(Verb.UNFREEZE, **ACME)),
    ("pause acme/api stage", on(Verb.PAUSE, "stage", **ACME)),
    ("resume acme/api stage", on(Verb.RESUME, "stage", **ACME)),
    ("PAUSE acme/api Stage", on(Verb.PAUSE, "stage", **ACME)),
    ("link octocat", Command(Verb.LINK, login="octocat")),
    ("link @octocat", Command(Verb.LINK, login="octocat")),
    ("link Mona-Lisa-1", Command(Verb.LINK, login="Mona-Lisa-1")),
    ("link " + "a" * 39, Command(Verb.LINK, login="a" * 39)),
    # what Slack actually sends: entities, autolinks, mentions
    ("<https://github.com/acme/api|acme/api> to stage", deploy("stage", **ACME)),
    ("<http://github.com/acme/api|github.com/acme/api> to stage", deploy("stage", **ACME)),
    ("<https://github.com/acme/api> to stage", deploy("stage", **ACME)),
    ("https://github.com/acme/api to stage", deploy("stage", **ACME)),
    (
        "<https://github.com/acme/api/tree/feature/x> to stage",
        deploy("stage", repository="acme/api", ref="feature/x"),
    ),
    (
        "<https://ghe.example.com/acme/api/commit/3f2a9c1> to stage",
        deploy("stage", repository="acme/api", ref="3f2a9c1"),
    ),
    ("subscribe <https://github.com/acme/api/>", on(Verb.SUBSCRIBE, **ACME)),
    (
        "lock acme/api production &lt;see #ops&gt; &amp; wait",
        on(Verb.LOCK, "production", reason="<see #ops> & wait", **ACME),
    ),
    (
        "lock acme/api production ask <@U0BOB|bob> in <#C01|ops>",
        on(Verb.LOCK, "production", reason="ask @bob in #ops", **ACME),
    ),
    (
        "lock acme/api production <!here> deploy party",
        on(Verb.LOCK, "production", reason="@here deploy party", **ACME),
    ),
    (
        "lock acme/api production <!subteam^S1|@sre> decides",
        on(Verb.LOCK, "production", reason="@sre decides", **ACME),
    ),
    (
        "lock acme/api production &amp;lt; stays",
        on(Verb.LOCK, "production", reason="&lt; stays", **ACME),
    ),
    (
        "lock acme/api production a\nsecond line",
        on(Verb.LOCK, "production", reason="a\nsecond line", **ACME),
    ),
    ("link <@U0MONA|monalisa>", Command(Verb.LINK, login="monalisa")),
    ("acme/api@a&amp;b to stage", deploy("stage", repository="acme/api", ref="a&b")),
    # free text keeps unknown dashes
    (
        "lock acme/api production -- see runbook",
        on(Verb.LOCK, "production", reason="-- see runbook", **ACME),
    ),
]


@pytest.mark.parametrize(("text", "expected"), SLASH, ids=[s[0][:50] or "(empty)" for s in SLASH])
def test_slash_commands(text: str, expected: Command) -> None:
    assert parse_slash(text) == expected


LOGIN_RULES = (
    "is not a GitHub login: letters, digits and single hyphens, at most 39, "
    "not starting or ending with a hyphen."
)
REPO_FORM = "is not a repository: write it as `owner/repo`."
SLACK_DEPLOY_USAGE = (
    "Usage: `/deploy <owner/repo>[@<ref>] to <env> [--force] [--queue] [--wait] [--dry-run]`"
)
LINK_USAGE = "Usage: `/deploy link <github-login>`"
FREEZE_USAGE = "Usage: `/deploy freeze <owner/repo> until <time> <reason>`"
LOCK_USAGE = "Usage: `/deploy lock <owner/repo> <env> [reason]`"
NOT_A_SUBCOMMAND = (
    "is not a subcommand. To deploy, name the repository: `/deploy <owner/repo> to <env>`."
)

SLASH_ERRORS = [
    ("teleport", f"`teleport` {NOT_A_SUBCOMMAND}", SLACK_USAGE),
    ("stage", f"`stage` {NOT_A_SUBCOMMAND}", SLACK_USAGE),
    ("<!channel> teleport", f"`@channel` {NOT_A_SUBCOMMAND}", SLACK_USAGE),
    ("lokc acme/api production", "`lokc` is not a subcommand; did you mean `lock`?", SLACK_USAGE),
    ("subscrbe acme/api", "`subscrbe` is not a subcommand; did you mean `subscribe`?", SLACK_USAGE),
    (
        "approve production",
        "`/deploy approve` is not a Slack command: approve with the button in the thread, "
        "or `/approve <env>` on the pull request.",
        SLACK_USAGE,
    ),
    (
        "Reject production",
        "`/deploy reject` is not a Slack command: reject with the button in the thread, "
        "or `/reject <env>` on the pull request.",
        SLACK_USAGE,
    ),
    (
        "subscribe",
        "`/deploy subscribe` needs a repository, as `owner/repo`.",
        "Usage: `/deploy subscribe <owner/repo>`",
    ),
    ("subscribe acme", f"`acme` {REPO_FORM}", "Usage: `/deploy subscribe <owner/repo>`"),
    (
        "subscribe acme/api/extra",
        f"`acme/api/extra` {REPO_FORM}",
        "Usage: `/deploy subscribe <owner/repo>`",
    ),
    ("subscribe /api", f"`/api` {REPO_FORM}", "Usage: `/deploy subscribe <owner/repo>`"),
    ("subscribe acme/", f"`acme/` {REPO_FORM}", "Usage: `/deploy subscribe <owner/repo>`"),
    (
        "subscribe <https://github.com/acme/api/pull/12>",
        f"`https://github.com/acme/api/pull/12` {REPO_FORM}",
        "Usage: `/deploy subscribe <owner/repo>`",
    ),
    (
        "subscribe ac_me/api",
        "`ac_me` is not a GitHub user or organization: letters, digits and hyphens.",
        "Usage: `/deploy subscribe <owner/repo>`",
    ),
    (
        "subscribe acme/a+b",
        "`a+b` is not a repository name: letters, digits, `-`, `_` and `.`.",
        "Usage: `/deploy subscribe <owner/repo>`",
    ),
    (
        "subscribe acme/..",
        "`..` is not a repository name: letters, digits, `-`, `_` and `.`.",
        "Usage: `/deploy subscribe <owner/repo>`",
    ),
    (
        "subscribe acme/api production",
        "Unexpected `production` after `/deploy subscribe acme/api`.",
        "Usage: `/deploy subscribe <owner/repo>`",
    ),
    (
        "subscribe acme/api --force",
        "`--force` does not apply to `/deploy subscribe`.",
        "Usage: `/deploy subscribe <owner/repo>`",
    ),
    ("--force", "`/deploy` needs a repository, as `owner/repo`.", SLACK_DEPLOY_USAGE),
    ("acme/api", "`/deploy` needs an environment.", SLACK_DEPLOY_USAGE),
    ("acme/api to", "`/deploy` needs an environment.", SLACK_DEPLOY_USAGE),
    ("acme/api@main --force", "`/deploy` needs an environment.", SLACK_DEPLOY_USAGE),
    (
        "acme/api to stage please",
        "Unexpected `please` after `/deploy acme/api to stage`.",
        SLACK_DEPLOY_USAGE,
    ),
    (
        "acme/api@v2 to stage production",
        "Unexpected `production` after `/deploy acme/api@v2 to stage`.",
        SLACK_DEPLOY_USAGE,
    ),
    (
        "acme/api to stage --wiat",
        "Unknown flag `--wiat` (did you mean `--wait`?). `/deploy` takes `--force`, `--queue`, "
        "`--wait`, `--dry-run`.",
        SLACK_DEPLOY_USAGE,
    ),
    (
        "acme/api@ to stage",
        "`acme/api@` has nothing after `@`: name a branch, tag or commit.",
        SLACK_DEPLOY_USAGE,
    ),
    (
        "acme/api@a..b to stage",
        "`a..b` is not a valid branch, tag or commit name.",
        SLACK_DEPLOY_USAGE,
    ),
    (
        "acme/api@main~1 to stage",
        "`main~1` is not a valid branch, tag or commit name.",
        SLACK_DEPLOY_USAGE,
    ),
    (
        "acme/api@feature/ to stage",
        "`feature/` is not a valid branch, tag or commit name.",
        SLACK_DEPLOY_USAGE,
    ),
    ("acme/api@-x to stage", "`-x` is not a valid branch, tag or commit name.", SLACK_DEPLOY_USAGE),
    (
        "acme/api@x.lock to stage",
        "`x.lock` is not a valid branch, tag or commit name.",
        SLACK_DEPLOY_USAGE,
    ),
    (
        "acme/api@a@{1} to stage",
        "`a@{1}` is not a valid branch, tag or commit name.",
        SLACK_DEPLOY_USAGE,
    ),
    ("acme/api@@ to stage", "`@` is not a valid branch, tag or commit name.", SLACK_DEPLOY_USAGE),
    ("acme/api@x to st@ge", f"`st@ge` {NOT_AN_ENV}", SLACK_DEPLOY_USAGE),
    (
        "status",
        "`/deploy status` needs a repository, as `owner/repo`.",
        "Usage: `/deploy status <owner/repo>`",
    ),
    (
        "rollback acme/api",
        "`/deploy rollback` needs an environment.",
        "Usage: `/deploy rollback <owner/repo> <env> [--force] [--queue] [--dry-run]`",
    ),
    (
        "rollback acme/api@3f2a9c1 production",
        "`/deploy rollback` works on the whole repository: drop the `@3f2a9c1`.",
        "Usage: `/deploy rollback <owner/repo> <env> [--force] [--queue] [--dry-run]`",
    ),
    (
        "rollback acme/api production --wait",
        "`--wait` does not apply to `/deploy rollback`.",
        "Usage: `/deploy rollback <owner/repo> <env> [--force] [--queue] [--dry-run]`",
    ),
    ("lock acme/api", "`/deploy lock` needs an environment.", LOCK_USAGE),
    ("lock acme/api production --force", "`--force` does not apply to `/deploy lock`.", LOCK_USAGE),
    (
        "unlock acme/api production now",
        "Unexpected `now` after `/deploy unlock acme/api production`.",
        "Usage: `/deploy unlock <owner/repo> <env>`",
    ),
    ("freeze acme/api", "`/deploy freeze` needs `until <time>` and a reason.", FREEZE_USAGE),
    (
        "freeze acme/api friday release",
        "`/deploy freeze` needs `until <time>` after the repository, not `friday`.",
        FREEZE_USAGE,
    ),
    (
        "freeze acme/api until",
        "`/deploy freeze` needs a time after `until`, like `friday`, `18:00`, `2026-12-01` "
        "or `+2h`.",
        FREEZE_USAGE,
    ),
    (
        "freeze acme/api until friday",
        "`/deploy freeze` needs a reason after the time, so people know why.",
        FREEZE_USAGE,
    ),
    (
        "freeze acme/api until friday --force",
        "`--force` does not apply to `/deploy freeze`.",
        FREEZE_USAGE,
    ),
    (
        "unfreeze",
        "`/deploy unfreeze` needs a repository, as `owner/repo`.",
        "Usage: `/deploy unfreeze <owner/repo>`",
    ),
    (
        "pause acme/api",
        "`/deploy pause` needs an environment.",
        "Usage: `/deploy pause <owner/repo> <env>`",
    ),
    (
        "resume",
        "`/deploy resume` needs a repository, as `owner/repo`.",
        "Usage: `/deploy resume <owner/repo> <env>`",
    ),
    ("link", "`/deploy link` needs your GitHub login.", LINK_USAGE),
    ("link -octocat", f"`-octocat` {LOGIN_RULES}", LINK_USAGE),
    ("link octocat-", f"`octocat-` {LOGIN_RULES}", LINK_USAGE),
    ("link octo--cat", f"`octo--cat` {LOGIN_RULES}", LINK_USAGE),
    ("link octo_cat", f"`octo_cat` {LOGIN_RULES}", LINK_USAGE),
    ("link " + "a" * 40, f"`{'a' * 40}` {LOGIN_RULES}", LINK_USAGE),
    ("link octocat monalisa", "Unexpected `monalisa` after `/deploy link octocat`.", LINK_USAGE),
    (
        "link <@U0MONA>",
        "`<@U0MONA>` is a Slack mention; `/deploy link` needs a GitHub login.",
        LINK_USAGE,
    ),
]


@pytest.mark.parametrize(
    ("text", "message", "usage"), SLASH_ERRORS, ids=[s[0][:50] for s in SLASH_ERRORS]
)
def test_slash_errors_say_what_was_wrong_and_the_right_form(
    text: str, message: str, usage: str
) -> None:
    error = parse_slash(text)
    assert isinstance(error, CommandError)
    assert (error.message, error.usage) == (message, usage)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("help", True),
        ("  HELP me please ", True),
        ("--help", True),
        ("?", True),
        ("<!channel> teleport", False),
        ("acme/api to stage", False),
        ("helpme", False),
    ],
)
def test_is_help(text: str, expected: bool) -> None:
    assert is_help(text) is expected


def test_usage_texts_cover_every_command_and_fit_slack() -> None:
    assert len(SLACK_USAGE) < 3000 and len(COMMENT_USAGE) < 3000
    for word in [
        "help",
        "subscribe",
        "unsubscribe",
        " to ",
        "status",
        "rollback",
        "lock",
        "unlock",
        "freeze",
        "unfreeze",
        "pause",
        "resume",
        "link",
        *(f.option for f in Flag),
    ]:
        assert word in SLACK_USAGE, word
    for form in [
        "/deploy <env>",
        "/deploy status",
        "/rollback <env>",
        "/approve <env>",
        "/reject <env> [reason]",
        "/lock <env> [reason]",
        "/unlock <env>",
        "/deploy pause <env>",
        "/deploy resume <env>",
        "/deploy help",
        *(f.option for f in Flag),
    ]:
        assert form in COMMENT_USAGE, form


def test_each_verb_renders_only_where_it_exists() -> None:
    with pytest.raises(ValueError, match="not a pull request comment command"):
        render_comment(Command(Verb.FREEZE, repository="acme/api", until="friday", reason="x"))
    with pytest.raises(ValueError, match="not a Slack"):
        render_slash(Command(Verb.APPROVE, environment="production"))
    assert render_comment(Command(Verb.HELP)) == "/deploy help"
    assert render_slash(Command(Verb.HELP)) == "help"


@pytest.mark.parametrize(
    ("command", "comment", "slash"),
    [
        (
            deploy("stage", DRY_RUN, FORCE, **ACME),
            "/deploy stage --force --dry-run",
            "acme/api to stage --force --dry-run",
        ),
        (deploy("status"), "/deploy to status", None),
        (on(Verb.REJECT, "production", reason="too risky"), "/reject production too risky", None),
        (
            on(Verb.FREEZE, until="+2h", reason="incident", **ACME),
            None,
            "freeze acme/api until +2h incident",
        ),
        (deploy("stage", repository="acme/api", ref="v1"), "/deploy stage", "acme/api@v1 to stage"),
        (on(Verb.LINK, code="7K3QD9XW2M"), "/deploy link 7K3QD9XW2M", None),
        (on(Verb.LINK, login="octocat"), None, "link octocat"),
        (deploy("link"), "/deploy to link", None),
    ],
)
def test_render(command: Command, comment: str | None, slash: str | None) -> None:
    if comment is not None:
        assert render_comment(command) == comment
    if slash is not None:
        assert render_slash(command) == slash


# ------------------------------------------------------------- properties

environments = st.from_regex(r"[a-z0-9](?:[a-z0-9._-]{0,14}[a-z0-9])?", fullmatch=True)
logins = st.from_regex(r"[A-Za-z0-9]{1,8}(?:-[A-Za-z0-9]{1,8}){0,3}", fullmatch=True)
codes = st.one_of(
    st.text("0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=10, max_size=10),
    st.from_regex(r"[A-Za-z0-9]{1,10}(?:-[A-Za-z0-9]{1,10}){0,3}", fullmatch=True),
)
repositories = st.builds(
    "{}/{}".format,
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,20}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True).filter(
        lambda name: name not in {".", ".."} and not name.endswith(".git")
    ),
)
refs = st.one_of(
    st.from_regex(
        r"[A-Za-z0-9][A-Za-z0-9_-]{0,10}(?:[./][A-Za-z0-9][A-Za-z0-9_-]{0,10}){0,3}", fullmatch=True
    ),
    st.from_regex(r"[0-9a-f]{7,40}", fullmatch=True),
).filter(lambda ref: not ref.endswith(".lock") and ".lock/" not in ref)
times = st.one_of(
    st.sampled_from(["friday", "Monday", "18:00", "2026-12-01", "2026-12-01T18:00", "+2h", "+30m"]),
    st.from_regex(r"[^\s-][^\s]{0,15}", fullmatch=True),
)
DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212"


def _free_text(text: str) -> bool:
    """A reason as people write it: no word that could read as a flag."""
    return bool(text) and not any(word[0] in DASHES for word in text.split())


reasons = (
    st.text(st.characters(categories=["L", "N", "P", "S", "Zs"]), min_size=1, max_size=40)
    .map(str.strip)
    .filter(_free_text)
)
flag_sets = st.frozensets(st.sampled_from(list(Flag)))
rollback_flags = st.frozensets(st.sampled_from([FORCE, QUEUE, DRY_RUN]))

comment_commands = st.one_of(
    st.just(Command(Verb.HELP)),
    st.just(Command(Verb.STATUS)),
    st.builds(lambda e, f: Command(Verb.DEPLOY, environment=e, flags=f), environments, flag_sets),
    st.builds(
        lambda e, f: Command(Verb.ROLLBACK, environment=e, flags=f), environments, rollback_flags
    ),
    st.builds(
        lambda v, e: Command(v, environment=e),
        st.sampled_from([Verb.APPROVE, Verb.UNLOCK, Verb.PAUSE, Verb.RESUME]),
        environments,
    ),
    st.builds(
        lambda v, e, r: Command(v, environment=e, reason=r),
        st.sampled_from([Verb.REJECT, Verb.LOCK]),
        environments,
        st.none() | reasons,
    ),
    st.builds(lambda code: Command(Verb.LINK, code=code), codes),
)

slash_commands = st.one_of(
    st.just(Command(Verb.HELP)),
    st.builds(
        lambda v, r: Command(v, repository=r),
        st.sampled_from([Verb.SUBSCRIBE, Verb.UNSUBSCRIBE, Verb.STATUS, Verb.UNFREEZE]),
        repositories,
    ),
    st.builds(
        lambda r, ref, e, f: Command(Verb.DEPLOY, environment=e, repository=r, ref=ref, flags=f),
        repositories,
        st.none() | refs,
        environments,
        flag_sets,
    ),
    st.builds(
        lambda r, e, f: Command(Verb.ROLLBACK, environment=e, repository=r, flags=f),
        repositories,
        environments,
        rollback_flags,
    ),
    st.builds(
        lambda v, r, e: Command(v, environment=e, repository=r),
        st.sampled_from([Verb.UNLOCK, Verb.PAUSE, Verb.RESUME]),
        repositories,
        environments,
    ),
    st.builds(
        lambda r, e, why: Command(Verb.LOCK, environment=e, repository=r, reason=why),
        repositories,
        environments,
        st.none() | reasons,
    ),
    st.builds(
        lambda r, t, why: Command(Verb.FREEZE, repository=r, until=t, reason=why),
        repositories,
        times,
        reasons,
    ),
    st.builds(lambda login: Command(Verb.LINK, login=login), logins),
)

# Words that steer the parsers down every path, mixed with arbitrary text.
VOCABULARY = [
    "/deploy",
    "/DEPLOY",
    "/rollback",
    "/approve",
    "/reject",
    "/lock",
    "/unlock",
    "deploy",
    "help",
    "status",
    "pause",
    "resume",
    "subscribe",
    "unsubscribe",
    "rollback",
    "lock",
    "unlock",
    "freeze",
    "unfreeze",
    "link",
    "approve",
    "to",
    "until",
    "stage",
    "Production",
    "--force",
    "--queue",
    "--wait",
    "--dry-run",
    "—force",
    "-x",
    "--",
    "acme/api",
    "acme/api@main",
    "acme/api@",
    "@octocat",
    "<@U1>",
    "<@U1|bob>",
    "<!here>",
    "&lt;",
    "&amp;",
    "<https://github.com/acme/api|acme/api>",
    "<https://github.com/a/b/tree/x>",
    "`",
    "**",
    ">",
    "\r\n",
    "\n",
    "friday",
    "+2h",
    "please",
]
token_soup = st.lists(
    st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=8)), max_size=8
).flatmap(lambda words: st.sampled_from([" ", "  ", "\t"]).map(lambda sep: sep.join(words)))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), token_soup))
def test_parsing_a_comment_never_raises(body: str) -> None:
    result = parse_comment(body)
    assert result is None or isinstance(result, Command | CommandError)
    if isinstance(result, CommandError):
        assert result.message and result.usage.startswith("Usage: `/")


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), token_soup))
def test_parsing_slack_text_never_raises(text: str) -> None:
    result = parse_slash(text)
    assert isinstance(result, Command | CommandError)
    if isinstance(result, CommandError):
        assert result.message and (
            result.usage.startswith("Usage: `/deploy") or result.usage == SLACK_USAGE
        )


@settings(max_examples=200, deadline=None)
@given(comment_commands)
def test_a_rendered_comment_parses_back(command: Command) -> None:
    assert parse_comment(render_comment(command)) == command


@settings(max_examples=200, deadline=None)
@given(
    comment_commands.filter(lambda c: c.verb not in {Verb.REJECT, Verb.LOCK}),
    st.sampled_from(["", "  ", "\n", "\ufeff"]),
    st.sampled_from(["{}", "`{}`", "**{}**", "{} please", "{}!"]),
    st.sampled_from(["", "\n", "\r\n", "\r\n> quoted\r\n/deploy production"]),
)
def test_a_command_survives_how_people_write_it(
    command: Command, before: str, wrapping: str, after: str
) -> None:
    text = render_comment(command)
    assert parse_comment(before + wrapping.format(text) + after) == command
    assert parse_comment(f"> {text}") is None


@settings(max_examples=200, deadline=None)
@given(slash_commands)
def test_rendered_slack_text_parses_back(command: Command) -> None:
    assert parse_slash(slack_escaped(render_slash(command))) == command


COMMENT_LEADS = [
    "/deploy",
    "/deploy pause",
    "/deploy link",
    "/rollback",
    "/approve",
    "/reject",
    "/lock",
]
SLACK_LEADS = [
    "acme/api",
    "acme/api@v1 to",
    "rollback acme/api",
    "lock acme/api stage",
    "freeze acme/api until",
    "link",
    "subscribe",
    "pause acme/api",
]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(COMMENT_LEADS), st.sampled_from(SLACK_LEADS), token_soup)
def test_whatever_parses_renders_to_the_same_command(
    comment_lead: str, slack_lead: str, soup: str
) -> None:
    comment = parse_comment(f"{comment_lead} {soup}")
    if isinstance(comment, Command):
        assert parse_comment(render_comment(comment)) == comment
    slash = parse_slash(f"{slack_lead} {soup}")
    if isinstance(slash, Command):
        assert parse_slash(slack_escaped(render_slash(slash))) == slash
