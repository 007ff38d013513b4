"""The console (`make run`): the real Bolt app behind a terminal, against the sandbox."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

from bot.console import open_console
from sandbox import demo

ROOT = Path(__file__).resolve().parents[1]


def run_lines(lines: list[str]) -> str:
    out = io.StringIO()
    with open_console(sandbox=True, user=demo.user("alice"), out=out) as console:

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
