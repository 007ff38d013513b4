"""The console (`make run`): the real Bolt app behind a terminal, against the sandbox."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.gateways.store import open_store
from bot.shell.console import Console, _repl
from bot.shell.console_start import open_console
from sandbox.local import wait_until
from tests.conftest import Cluster8s

ROOT = Path(__file__).resolve().parents[1]


class Wait(str):
    """A script step that is not typed: the reader waits until this text has been printed."""


Step = str | Wait | Callable[[Console], None]
WAIT_SECONDS = 30


def run_session(
    steps: list[Step],
    workdir: Path,
    *,
    user: str = "alice",
    ansi: bool = False,
    after: Callable[[Console, Cluster8s], Any] | None = None,
) -> tuple[str, Any]:
    """Drive the console's own input loop (`_repl`) as a person at the keyboard would: each typed
    line is read where `input()` would be, after the prompt. `after` looks at the cluster
    before the sandbox goes away. Without the data stores: tests/test_console_data.py starts them
    in the real console process."""
    out = io.StringIO()
    with open_console(
        sandbox=True, user=user, out=out, workdir=workdir, ansi=ansi, demo_data=False
    ) as console:
        script = iter(steps)
        mark = 0

        def read(prompt: str) -> str:
            nonlocal mark
            out.write(prompt)
            for step in script:
                if isinstance(step, Wait):
                    printed = lambda s=step, m=mark: s in out.getvalue()[m:]  # noqa: E731
                    try:
                        wait_until(printed, WAIT_SECONDS, f"the console to print {step!r}", poll=0.05)
                    except AssertionError as exc:
                        raise AssertionError(f"{exc}; it printed:\n{out.getvalue()}") from None
                elif callable(step):
                    step(console)
                else:
                    mark = len(out.getvalue())
                    out.write(step + "\n")
                    return step
            raise EOFError

        async def main() -> None:
            await console.runtime.start()
            try:
                await _repl(console, read)
            finally:
                await console.runtime.close()

        asyncio.run(main())
        view = Cluster8s(Path(str(console.runtime.settings.kubeconfig)), console.runtime.catalog.namespace)
        found = after(console, view) if after else None
    return out.getvalue(), found


def run_lines(lines: list[str], tmp_path: Path) -> str:
    return run_session(list(lines), tmp_path)[0]


def test_status_scale_audit_and_switching_user(tmp_path):
    out = run_lines(
        [
            "/payflow status",
            "/payflow scale api-gateway 5",
            "/as dave",
            "/payflow scale api-gateway 7",
            "/as carol",
            "/payflow audit",
        ],
        tmp_path,
    )
    assert "== PayFlow status · production ==" in out
    assert "✅ api-gateway — live: blue" in out  # mrkdwn rendered, plain when not a terminal
    assert "🔵 blue (live) v1.0.0 · 3/3 ready" in out
    assert "⏳ Scaling api-gateway to 5 replicas…" in out
    assert "@alice scaled api-gateway (🔵 blue) 3 → 5" in out
    assert "You are now dave (U0DAVE, viewer)." in out
    assert "This needs the operator role; you have viewer." in out
    assert "@dave scale api-gateway denied" in out
    assert "@alice scale api-gateway ok — blue 3 → 5" in out
    assert "<@" not in out and "*" not in out and "`" not in out
    assert "UTC" in out  # dates shown with their readable fallback


def test_bad_input_and_console_commands(tmp_path):
    out = run_lines(
        ["/payflow scale api-gateway 999", "/whoami", "/channel random", "/payflow status", "42", "hello"],
        tmp_path,
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
        [sys.executable, "-m", "bot.shell.cli", "console", "--sandbox"],
        input="/payflow status api-gateway\n/payflow scale api-gateway 4\n/quit\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "live: blue" in proc.stdout
    assert "@alice scaled api-gateway (🔵 blue) 3 → 4" in proc.stdout
    # the process's log lines go to the file it names, none into the chat or onto the terminal
    [log] = re.findall(r"the console's log is (\S+)", proc.stdout)
    assert " INFO " in Path(log).read_text()
    assert " INFO " not in proc.stdout + proc.stderr


OPERATOR, APPROVER = "U0OPSREAL", "U0APPREAL"


def _real_console(lines: list[str], *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.shell.cli", "console", *args],
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
    text = (ROOT / "bot" / "config" / "catalog.default.yaml").read_text()
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
    assert f"@{OPERATOR} scaled api-gateway" in out
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
        (("--as", "*"), "'*' is not a Slack user ID listed"),  # viewer: ["*"] names no one
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


def _restarts(view: Cluster8s, name: str = "api-gateway-blue") -> tuple[int, str | None]:
    dep = view.deployment(name)
    annotations = dep.spec.template.metadata.annotations or {}
    return dep.metadata.generation, annotations.get("kubectl.kubernetes.io/restartedAt")


def _view(console: Console) -> Cluster8s:
    return Cluster8s(Path(str(console.runtime.settings.kubeconfig)), console.runtime.catalog.namespace)


def test_restart_asks_first_and_its_button_is_gone_once_pressed(tmp_path):
    seen: dict[str, tuple[int, str | None]] = {}
    out, after = run_session(
        [
            "/payflow restart api-gateway",
            Wait("[1] Restart api-gateway"),
            lambda c: seen.setdefault("before", _restarts(_view(c))),
            "1",
            "n",
            lambda c: seen.setdefault("denied", _restarts(_view(c))),
            "1",
            "y",
            Wait("removed the message with that button"),
            "1",
        ],
        tmp_path,
        after=lambda c, view: _restarts(view),
    )
    assert "Restart?\nRolling restart of api-gateway-blue.\n   y = Restart   N = Cancel" in out
    assert "Restart? [y/N] n\nCancelled: “Restart api-gateway” was not pressed; nothing was sent." in out
    assert seen["denied"] == seen["before"]  # "n" sent nothing: no restart
    assert "@alice restarted api-gateway (blue)" in out
    assert "Button 1 (Restart api-gateway) is gone: its message was removed." in out
    generation, restarted_at = after
    assert generation == seen["before"][0] + 1  # restarted exactly once
    assert restarted_at is not None


def _live_backend(view: Cluster8s, path: str = "/") -> str:
    ingress = view.net.read_namespaced_ingress("payflow-ingress", view.ns, _request_timeout=5)
    return next(
        p.backend.service.name for rule in ingress.spec.rules for p in rule.http.paths if p.path == path
    )


def test_approve_asks_before_it_switches_and_its_buttons_go_with_the_update(tmp_path):
    seen: dict[str, str] = {}
    out, live = run_session(
        [
            "/payflow deploy api-gateway v1.1.0 PAY-981",
            Wait("[2] Reject (!)"),
            "/as bob",
            "1",
            "n",
            lambda c: seen.setdefault("after no", _live_backend(_view(c))),
            "1",
            "y",
            Wait("Traffic now on green v1.1.0"),
            "1",
            "2",
        ],
        tmp_path,
        after=lambda c, view: _live_backend(view),
    )
    assert "Switch traffic?\nSwitch api-gateway traffic from blue v1.0.0 to green v1.1.0?" in out
    assert "Cancelled: “Approve” was not pressed; nothing was sent." in out
    assert seen["after no"] == "api-gateway-blue"
    assert "approved by @bob" in out
    assert "Button 1 (Approve) is gone: its message was updated." in out
    assert "Button 2 (Reject) is gone: its message was updated." in out
    assert live == "api-gateway-green"
    # channels and people by name, as Slack shows them
    assert "#payflow-approvals · payflow-bot:" in out
    assert "Approval requested in #payflow-approvals" in out or "this message" in out
    assert "<@" not in out and "<#" not in out


def test_shared_files_are_saved_named_and_shown(tmp_path):
    def more_logs(console: Console) -> None:
        pods = _view(console).core.list_namespaced_pod("payflow", label_selector="app=api-gateway,color=blue")
        lines = [f"INFO  [t] request {i} served" for i in range(60)]
        console.cluster.add_log_lines("payflow", pods.items[0].metadata.name, lines)

    out, files = run_session(
        [
            more_logs,
            "/payflow logs api-gateway --lines 60",
            Wait("📎 [file 1]"),
            "/open 1",
            "/open 7",
            "/open",
        ],
        tmp_path,
        after=lambda c, view: list(c.files),
    )
    [saved] = files
    assert saved.path.parent == tmp_path / "files"
    assert f"files the bot shares are saved in {tmp_path / 'files'}" in out
    assert f"📎 [file 1] api-gateway (blue): 60 log lines, 3 pods — {saved.path}" in out
    lines = saved.path.read_text().splitlines()
    assert len(lines) == 60
    assert "    " + lines[0] in out  # first lines inline
    assert "… 52 more line(s) in the file" in out
    assert f"{saved.path} (60 lines):" in out and "    " + lines[-1] in out  # /open of a text file
    assert "No file 7 (files shared so far: 1–1). Usage: /open <number>" in out
    assert "No file ? (files shared so far: 1–1)" in out
    # logs can hold customer data: the file is in a thread, the channel sees only a note
    assert "(in thread):" in out
    assert "the excerpt is in this thread" in out
    assert (
        "(only visible to you) payflow-bot:\n"
        "ℹ️ api-gateway (blue): 60 log lines, 3 pods: the file is in the thread" in out
    )


def test_a_chart_is_saved_as_png_and_opened_on_request(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    opened = tmp_path / "opened.txt"
    viewer = bin_dir / "xdg-open"
    viewer.write_text(f'#!/bin/sh\necho "$@" > {opened}\n')
    viewer.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DISPLAY", ":0")
    workdir = tmp_path / "console"

    def no_display(console: Console) -> None:
        monkeypatch.delenv("DISPLAY")
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)

    out, files = run_session(
        [
            "/payflow metrics api-gateway 15m",
            Wait("📎 [file 1]"),
            "/open 1",
            Wait("Opened"),
            no_display,
            "/open 1",
        ],
        workdir,
        after=lambda c, view: list(c.files),
    )
    [chart] = files
    assert chart.path.suffix == ".png" and chart.path.read_bytes().startswith(b"\x89PNG")
    assert "/open 1 to look at it" in out
    assert f"Opened {chart.path} with xdg-open." in out
    wait_until(opened.exists, 10, "the viewer to be run", poll=0.05)
    assert opened.read_text().strip() == str(chart.path)
    assert f"No image viewer on this machine (no display): the file is {chart.path}" in out


def test_logs_go_to_the_named_file_and_warnings_become_notices(tmp_path):
    out, _ = run_session(
        [
            lambda c: c.stub.fail_next("usergroups.users.list", status=500),
            "/as bob",
            "/payflow scale api-gateway 4",
            Wait("Could not read the membership"),
        ],
        tmp_path,
    )
    log = tmp_path / "console.log"
    assert f"the console's log is {log}" in out
    text = log.read_text()
    assert " INFO " in text  # the bot's own log lines are kept ...
    assert "reading user group S0APPROVERS failed" in text
    assert " INFO " not in out and "DEBUG" not in out  # ... but out of the chat
    assert "(console notice) warning: reading user group S0APPROVERS failed" in out


def test_on_a_terminal_mrkdwn_becomes_ansi_styles(tmp_path):
    out, _ = run_session(["/payflow scale api-gateway 4"], tmp_path, ansi=True)
    assert "\x1b[1m@alice\x1b[0m scaled \x1b[1mapi-gateway\x1b[0m" in out
    assert "*" not in out


def test_mrkdwn_rendering():
    from bot.shell.console_render import Mrkdwn, Style

    names = {"U0BOB": "bob"}.get
    md = Mrkdwn(Style(False), lambda u: names(u) or u, lambda c: {"C0OPS": "payflow-ops"}.get(c, c))
    text = (
        "*bold* _italic_ ~gone~ `a_b*c*` <@U0BOB> <@U0NEW> <#C0OPS> <#C1|named> <!here> "
        "<https://x.example/a_b|the link> <https://y.example> snake_case_name 2*3*4 &lt;tag&gt;"
        "\n```\nline_one *x*\n```"
    )
    assert md(text) == (
        "bold italic gone a_b*c* @bob @U0NEW #payflow-ops #named @here "
        "the link (https://x.example/a_b) https://y.example snake_case_name 2*3*4 <tag>"
        "\n\n    line_one *x*\n"
    )
    ansi = Mrkdwn(Style(True), lambda u: u, lambda c: c)
    assert ansi("*b* _i_ `c`") == "\x1b[1mb\x1b[0m \x1b[3mi\x1b[0m \x1b[36mc\x1b[0m"


def test_digests_of_each_kind_on_demand(tmp_path):
    out = run_lines(
        ["/payflow digest now", "/payflow digest now weekly", "/payflow digest now monthly"], tmp_path
    )
    assert "== PayFlow digest · production ==" in out
    assert "Business (all PayFlow, the last day) transactions " in out
    assert "== PayFlow weekly review · production ==" in out
    assert "Changes 0 deployed, 0 rolled back this week" in out
    assert "api-gateway · requests " in out and "replicas 3/3 (max 20)" in out
    assert "restarts: the pods' own restart counts" in out  # the sandbox exports no restart counter
    assert "== PayFlow monthly review · production ==" in out
    assert "Incidents 0 alert group(s) started in the last 30 days" in out
    assert "error budget: the share of the allowed 0.10 % unavailability (SLO 99.900 %)" in out
