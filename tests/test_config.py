"""The catalog: the built-in default is the guide's PayFlow, and a broken file is refused with
every error named by its key path — by `check-config` and by `serve` alike."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config.catalog import CatalogError, load_catalog

ROOT = Path(__file__).resolve().parents[1]

BROKEN = """\
environment: staging
environments:
  production:
    namespace: Pay_Flow
    approval_ttl_seconds: -5
services:
  api-gateway:
    port: 70000
    replicas: 3
    max_replicas: 2
    colour: blue
  Wallet_Service:
    port: 3002
roles:
  operator: {users: [alice]}
  approver: {groups: [approvers]}
channels:
  commands: ["payflow ops"]
slos:
  error_rate: 5
"""


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PAYFLOW_", "REDIS_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot.shell.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=full_env,
    )


def test_builtin_catalog_is_the_guides_payflow():
    c = load_catalog()
    assert c.namespace == "payflow"
    assert list(c.services) == ["api-gateway", "auth-service", "wallet-service", "transaction-service"]
    assert c.services["api-gateway"].port == 3000 and c.services["wallet-service"].port == 3002
    assert c.deployment_name("api-gateway", "green") == "api-gateway-green"
    assert c.k8s_service_name("wallet-service", "blue") == "wallet-service-blue"
    assert c.services["api-gateway"].traffic.name == "payflow-ingress"
    assert c.services["api-gateway"].traffic.host == "payflow.com"
    assert c.services["api-gateway"].traffic.path == "/"
    assert all(s.replicas == 3 and s.health_path == "/health" for s in c.services.values())
    assert (c.slos.p95_ms, c.slos.error_rate, c.slos.availability) == (200, 0.001, 0.999)
    assert load_catalog(ROOT / "payflow.yaml") == c


def test_broken_catalog_names_every_error(tmp_path):
    path = tmp_path / "payflow.yaml"
    path.write_text(BROKEN)
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    problems = info.value.problems
    expected = [
        "environments.production.namespace: must be a Kubernetes namespace name",
        "environments.production.approval_ttl_seconds: Input should be greater than 0",
        "services.api-gateway.port: Input should be less than or equal to 65535",
        "services.api-gateway.colour: unknown key (check the spelling)",
        "services.Wallet_Service: service names must be DNS labels",
        "roles.operator.users: not Slack user IDs (U… or W…, or '*' for everyone): alice",
        "roles.approver.groups: not Slack user-group IDs (S…): approvers",
        "channels.commands: 'payflow ops' is neither a channel ID (C…, G…) nor a #channel-name",
        "slos.error_rate: Input should be less than or equal to 1",
        "environment: 'staging' is not among environments (production)",
    ]
    text = "\n".join(problems)
    for fragment in expected:
        assert fragment in text, fragment


def test_check_config_cli(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    bad = run_cli("check-config", str(path))
    assert bad.returncode == 1
    assert f"{path}: " in bad.stdout and "error(s)" in bad.stdout
    assert "services.api-gateway.colour: unknown key" in bad.stdout

    good = run_cli("check-config", str(ROOT / "payflow.yaml"))
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ok — environment production (namespace payflow), 4 services" in good.stdout

    yaml_error = tmp_path / "bad-yaml.yaml"
    yaml_error.write_text("services: [unclosed\n")
    out = run_cli("check-config", str(yaml_error))
    assert out.returncode == 1 and "not valid YAML" in out.stdout and "line 2" in out.stdout

    missing = run_cli("check-config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "cannot read it" in missing.stdout


def test_serve_refuses_an_invalid_catalog_and_missing_credentials(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    bad_catalog = run_cli("serve", env={"PAYFLOW_CONFIG": str(path), "SLACK_BOT_TOKEN": "xoxb-1"})
    assert bad_catalog.returncode == 2
    assert "services.api-gateway.colour: unknown key" in bad_catalog.stderr

    secret = "s3cr3t-signing-value"
    no_token = run_cli("serve", env={"SLACK_SIGNING_SECRET": secret})
    assert no_token.returncode == 2
    assert "SLACK_BOT_TOKEN is not set" in no_token.stderr
    assert secret not in no_token.stderr + no_token.stdout

    no_secret = run_cli("serve", env={"SLACK_BOT_TOKEN": "xoxb-abc"})
    assert "SLACK_SIGNING_SECRET is not set" in no_secret.stderr and no_secret.returncode == 2

    socket = run_cli("serve", "--socket-mode", env={"SLACK_BOT_TOKEN": "xoxb-abc"})
    assert "--socket-mode needs SLACK_APP_TOKEN" in socket.stderr and socket.returncode == 2


def test_digest_kinds_and_default_schedules(tmp_path):
    c = load_catalog()
    kinds = {d.name: (d.kind, d.cron) for d in c.digests}
    assert kinds["weekly-review"] == ("weekly", "0 9 * * 1")  # Mondays 09:00
    assert kinds["monthly-review"] == ("monthly", "0 9 1 * *")  # the 1st, 09:00
    assert all(d.channel is None for d in c.digests)  # channels.digests
    path = tmp_path / "payflow.yaml"
    text = (ROOT / "payflow.yaml").read_text()
    path.write_text(text.replace("kind: weekly", "kind: fortnightly"))
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    [problem] = info.value.problems
    assert problem.startswith("digests.2.kind: ") and "'weekly'" in problem and "'monthly'" in problem
