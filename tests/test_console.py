"""The console (`make run`): the real Bolt app behind a terminal, against the sandbox."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.console import open_console
from bot.store import open_store

ROOT = Path(__file__).resolve().parents[1]


def run_lines(lines: list[str]) -> str:
    out = io.StringIO()
    with open_console(sandbox=True, user="alice", out=out) as console:

        async def script() -> None:
            await console.runtime.start()
            try:
                for line in lines:
                    console.say(f"payflow> {line}")
                    assert await console.handle(line)
            finally:
                await console.runtime.close()

        asyncio.run(script())
    return out.getvalue()


def test_status_scale_audit_and_switching_user():
    out = run_lines(
        [
            "/payflow status",
            "/payflow scale api-gateway 5",
            "/as dave",
            "/payflow scale api-gateway 7",
            "/as carol",
            "/payflow audit",
        ]
    )
    assert "== PayFlow status · production ==" in out
    assert "✅ *api-gateway* — live: *blue*" in out
    assert "🔵 blue *(live)* `v1.0.0` · 3/3 ready" in out
    assert "⏳ Scaling api-gateway to 5 replicas…" in out
    assert "@alice scaled *api-gateway* (🔵 blue) 3 → 5" in out
    assert "You are now dave (U0DAVE, viewer)." in out
    assert "This needs the *operator* role; you have viewer." in out
    assert "@dave `scale api-gateway` *denied*" in out
    assert "@alice `scale api-gateway` *ok* — blue 3 → 5" in out
    assert "UTC" in out  # dates shown with their readable fallback


def test_bad_input_and_console_commands():
    out = run_lines(
        ["/payflow scale api-gateway 999", "/whoami", "/channel random", "/payflow status", "42", "hello"]
    )
    assert "999 replicas is out of bounds: api-gateway takes 2–20." in out
    assert "alice (U0ALICE, operator) in #payflow-ops" in out
    assert "/payflow is not enabled here" in out
    assert "No button 42." in out
    assert "Type a slash command" in out


def test_make_run_entry_point_works_with_piped_input():
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "REDIS_", "KUBECONFIG", "PAYFLOW_"))
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "console", "--sandbox"],
        input="/payflow status api-gateway\n/payflow scale api-gateway 4\n/quit\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "live: *blue*" in proc.stdout
    assert "@alice scaled *api-gateway* (🔵 blue) 3 → 4" in proc.stdout


OPERATOR, APPROVER = "U0OPSREAL", "U0APPREAL"


def _real_console(lines: list[str], *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "console", *args],
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


@pytest.fixture
def real_env(tmp_path: Path, kubeconfig: Path, redis_url: str) -> dict[str, str]:
    """A catalog with real roles (no demo people), a cluster reached through KUBECONFIG and a
    real redis-server: what `console` without --sandbox runs against."""
    text = (ROOT / "bot" / "catalog.default.yaml").read_text()
    text = text.replace("operator: {users: [], groups: []}", f'operator: {{users: ["{OPERATOR}"]}}')
    text = text.replace("approver: {users: [], groups: []}", f'approver: {{users: ["{APPROVER}"]}}')
    catalog = tmp_path / "payflow.yaml"
    catalog.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "REDIS_", "PAYFLOW_"))}
    env.pop("PROMETHEUS_URL", None)
    return {**env, "PAYFLOW_CONFIG": str(catalog), "KUBECONFIG": str(kubeconfig), "REDIS_URL": redis_url}


def _audit(redis_url: str) -> list[tuple[str, str, str]]:
    async def read() -> list[tuple[str, str, str]]:
        store = open_store(redis_url)
        try:
            return [(e.actor, e.action, e.outcome) for e in await store.audit(limit=50)]
        finally:
            await store.close()

    return asyncio.run(read())


def test_outside_the_sandbox_the_console_is_one_catalog_user_and_as_is_refused(real_env, k8s_view, redis_url):
    before = k8s_view.replicas("api-gateway-blue")
    proc = _real_console(
        ["/as bob", "/as U0BOB", "/whoami", "/payflow scale api-gateway 5", "/as carol", "/quit"],
        "--as",
        OPERATOR,
        env=real_env,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"acting as {OPERATOR} (operator)" in out
    assert out.count("/as is only for the sandbox") == 3
    assert f"{OPERATOR} ({OPERATOR}, operator) in #payflow-ops" in out
    assert f"@{OPERATOR} scaled *api-gateway*" in out
    assert "You are now" not in out
    assert k8s_view.replicas("api-gateway-blue") == 5 != before
    actors = {actor for actor, _, _ in _audit(redis_url)}
    assert actors == {OPERATOR}  # the real ID, never a demo one


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "pass --as <Slack user ID>"),
        (("--as", "bob"), "'bob' is not a Slack user ID listed in the catalog's roles"),
        (("--as", "U0BOB"), f"It names: {APPROVER}, {OPERATOR}."),
        (("--as", "U0NOBODY"), "'U0NOBODY' is not a Slack user ID listed"),
    ],
)
def test_outside_the_sandbox_an_unknown_or_missing_identity_is_refused(
    real_env, k8s_view, redis_url, args, message
):
    before = k8s_view.fingerprint()
    proc = _real_console(["/payflow scale api-gateway 5", "/quit"], *args, env=real_env)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "scaled" not in proc.stdout
    assert k8s_view.fingerprint() == before
    assert _audit(redis_url) == []
