"""The deployment files under `deploy/` describe a service that can run: every setting they
pass is one deploybot reads, the replicas share PostgreSQL, and the probes are the app's."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.app import create_app
from bot.settings import Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SETTINGS = {name.upper() for name in Settings.model_fields}
REQUIRED = {
    "DATABASE_URL",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "GITHUB_APP_ID",
    "GITHUB_WEBHOOK_SECRET",
    "GITHUB_APP_PRIVATE_KEY",
}


def test_compose_runs_replicas_on_postgresql_behind_a_balancer() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    bot = services["deploybot"]
    assert bot["deploy"]["replicas"] >= 2
    assert (DEPLOY / bot["build"] / "Dockerfile").is_file()
    env = bot["environment"]
    assert set(env) <= SETTINGS and REQUIRED <= set(env)
    assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:" in env["DATABASE_URL"]
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    balancer = services["balancer"]
    config = (DEPLOY / "nginx.conf").read_text()
    assert any(v.startswith("./nginx.conf:") for v in balancer["volumes"])
    assert re.search(r"http://deploybot:8080", config)


def test_kubernetes_runs_replicas_with_the_apps_probes(make_settings) -> None:
    documents = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text())}
    assert {"Deployment", "Service", "PodDisruptionBudget", "Ingress"} <= set(documents)
    spec = documents["Deployment"]["spec"]
    assert spec["replicas"] >= 2
    (container,) = spec["template"]["spec"]["containers"]
    assert container["args"] == ["serve"]
    assert {e["name"] for e in container["env"]} <= SETTINGS
    routes = {getattr(route, "path", None) for route in create_app(make_settings()).routes}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in routes
    assert container["ports"][0]["containerPort"] == Settings.model_fields["deploybot_port"].default
    assert documents["Service"]["spec"]["selector"] == spec["selector"]["matchLabels"]
