"""A terminal in place of Slack, like Hubot's shell adapter: the real Bolt app and the real
signature check, with the Slack Web API played by a local stand-in whose recorded messages
are printed as text. Buttons are numbered and pressed by typing their number."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from slack_bolt.request.async_request import AsyncBoltRequest

from bot.config import Catalog
from bot.roles import Role
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from sandbox import demo
from sandbox.slack_requests import SignedRequest, SlackRequests

PROMPT = "payflow> "
HELP = """\
Type a slash command as in Slack, e.g. /payflow status   (/payflow help lists them all)
  <number>        press the button with that number
{as_line}  /channel <name> type from another channel (default #{channel})
  /whoami         who and where you are
  /quit           leave (Ctrl-D works too)"""
AS_REFUSED = (
    "/as is only for the sandbox: against a real cluster and store the console acts as exactly "
    "one catalog user ({user}). Start another console with --as <Slack user ID> for another person."
)


class ConsoleRefused(Exception):
    """The console cannot start as asked; the message says what to do instead."""


def catalog_user(catalog: Catalog, user_id: str) -> demo.DemoUser:
    """The person the catalog names by this Slack user ID, with the highest role it lists them
    under. Outside the sandbox there is no Slack to read user groups from, and anyone not named
    (`*` names nobody) is refused: an identity the console cannot vouch for must not act."""
    listed = {role: getattr(catalog.roles, role.label).users for role in sorted(Role, reverse=True)}
    for role, users in listed.items():
        if user_id in users:
            return demo.DemoUser(user_id, user_id, role.label)
    named = sorted({u for users in listed.values() for u in users if u != "*"})
    hint = f" It names: {', '.join(named)}." if named else " It names nobody yet (roles.*.users)."
    raise ConsoleRefused(
        f"{user_id!r} is not a Slack user ID listed in the catalog's roles, so the console cannot act "
        f"as them.{hint} Without --sandbox the console acts as exactly one catalog user: "
        "--as <Slack user ID>. (Members of user groups must be listed by ID: the console has no "
        "Slack to read groups from.)"
    )


_MENTION = re.compile(r"<@([UW][A-Z0-9]+)>")
_DATE = re.compile(r"<!date\^[^|>]*\|([^>]*)>")
_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]+)>")
_SILENT = {"auth.test", "usergroups.users.list", "chat.getPermalink", "users.info", "conversations.info"}


def _mrkdwn(text: str) -> str:
    def name(m: re.Match[str]) -> str:
        u = demo.user(m.group(1))
        return f"@{u.name}" if u else f"@{m.group(1)}"

    text = _MENTION.sub(name, text)
    text = _DATE.sub(r"\1", text)
    text = _LINK.sub(r"\2 (\1)", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@dataclass
class Button:
    channel: str
    message: dict[str, Any]
    block_id: str
    action: dict[str, Any]


class TextRenderer:
    """Block Kit → readable lines; buttons get numbers that stay valid for the session."""

    def __init__(self) -> None:
        self.buttons: list[Button] = []

    def _button(
        self, channel: str, message: dict[str, Any], block: dict[str, Any], el: dict[str, Any]
    ) -> str:
        self.buttons.append(Button(channel, message, block.get("block_id", ""), el))
        label = _mrkdwn(el.get("text", {}).get("text", "?"))
        style = {"primary": "", "danger": " (!)"}.get(el.get("style", ""), "")
        return f"[{len(self.buttons)}] {label}{style}"

    def render(self, channel: str, message: dict[str, Any], *, compact: bool = False) -> str:
        """`compact`: for a message updated in place, leave out the fields the reader saw already."""
        blocks = message.get("blocks") or []
        if compact:
            blocks = [b for b in blocks if not b.get("fields") and b.get("type") != "context"]
        if not blocks:
            return _mrkdwn(message.get("text", ""))
        lines: list[str] = []
        for block in blocks:
            kind = block.get("type")
            if kind == "header":
                lines.append(f"== {block['text']['text']} ==")
            elif kind == "section":
                if block.get("text"):
                    lines.append(_mrkdwn(block["text"]["text"]))
                lines += [_mrkdwn(f["text"]) for f in block.get("fields", [])]
                accessory = block.get("accessory")
                if accessory and accessory.get("type") == "button":
                    lines.append("   " + self._button(channel, message, block, accessory))
            elif kind == "context":
                lines.append(
                    "   " + " · ".join(_mrkdwn(e.get("text", "")) for e in block.get("elements", []))
                )
            elif kind == "actions":
                buttons = [self._button(channel, message, block, e) for e in block.get("elements", [])]
                lines.append("   " + "   ".join(buttons))
            elif kind == "divider":
                lines.append("-" * 40)
            elif kind == "image":
                lines.append(f"[image: {block.get('alt_text', '')}]")
        return "\n".join(lines)


class Console:
    def __init__(
        self,
        runtime: Runtime,
        stub: Any,
        requests: SlackRequests,
        user: demo.DemoUser,
        out: TextIO = sys.stdout,
        *,
        sandbox: bool = True,
    ):
        self.runtime = runtime
        self.stub = stub
        self.requests = requests
        self.user = user
        self.sandbox = sandbox
        channels = runtime.catalog.channels
        if sandbox:
            self.channel_id, self.channel_name = demo.OPS_CHANNEL_ID, demo.OPS_CHANNEL_NAME
        else:  # the first channel the catalog accepts commands in
            first = channels.commands[0]
            name = first[1:] if first.startswith("#") else first
            self.channel_id = stub.channel_id(first) if first.startswith("#") else first
            self.channel_name = name
        self.home_channel = self.channel_id, self.channel_name
        self.channel_names = {self.channel_id: self.channel_name}
        for name in {channels.approvals, channels.alerts, channels.audit, channels.digests}:
            if name.startswith("#"):
                self.channel_names[stub.channel_id(name)] = name[1:]
        self.out = out
        self.renderer = TextRenderer()
        self._events: list[Any] = []  # every call the bot made to "Slack", in arrival order
        self._seen = 0
        stub.subscribe(self._events.append)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def show_new(self) -> None:
        """Print whatever the bot sent to Slack since last time."""
        events = self._events[self._seen :]
        self._seen += len(events)
        for event in events:
            text = self._describe(event)
            if text:
                self.say(text)

    def _describe(self, call: Any) -> str | None:
        p = call.params
        if call.method in _SILENT:
            return None
        if call.method in ("chat.postMessage", "chat.update"):
            channel = str(p.get("channel", "?"))
            ts = p.get("ts") or call.response.get("ts", "0")
            message = {"ts": ts, "text": p.get("text", ""), "blocks": p.get("blocks") or []}
            updated = call.method == "chat.update"
            where = channel if channel.startswith("#") else f"#{self.channel_names.get(channel, channel)}"
            thread = " (in thread)" if p.get("thread_ts") else ""
            edited = " (updated)" if updated else ""
            body = self.renderer.render(channel, message, compact=updated)
            return f"\n{where} · payflow-bot{edited}{thread}:\n{body}"
        if call.method in ("response_url", "chat.postEphemeral"):
            public = p.get("response_type") == "in_channel"
            head = f"#{self.channel_name} · payflow-bot:" if public else "(only visible to you) payflow-bot:"
            message = {"ts": "0", "text": p.get("text", ""), "blocks": p.get("blocks") or []}
            return f"\n{head}\n{self.renderer.render(self.channel_id, message)}"
        if call.method == "files.completeUploadExternal":
            return f"\n[file shared: {p.get('files', '')}]"
        return None

    async def _dispatch(self, signed: SignedRequest) -> None:
        request = AsyncBoltRequest(body=signed.body, headers=signed.headers)
        response = await self.runtime.bolt.async_dispatch(request)
        if response.status != 200:
            self.say(f"(Slack would show an error: HTTP {response.status} {response.body})")
        elif response.body:
            import json

            try:
                ack = json.loads(response.body)
            except ValueError:
                ack = {"text": response.body}
            self.say("(only visible to you) payflow-bot:\n" + self.renderer.render(self.channel_id, ack))
        await self.runtime.jobs.drain()
        self.show_new()

    async def slash(self, text: str) -> None:
        command, _, rest = text.partition(" ")
        await self._dispatch(
            self.requests.slash(
                rest.strip(),
                user_id=self.user.id,
                user_name=self.user.name,
                channel_id=self.channel_id,
                channel_name=self.channel_name,
                command=command,
                response_url=self.stub.response_url(secrets.token_hex(4)),
            )
        )

    async def press(self, number: int) -> None:
        if not 1 <= number <= len(self.renderer.buttons):
            self.say(f"No button {number}.")
            return
        b = self.renderer.buttons[number - 1]
        self.say(f"({self.user.name} pressed “{b.action.get('text', {}).get('text', '?')}”)")
        await self._dispatch(
            self.requests.button(
                user_id=self.user.id,
                user_name=self.user.name,
                channel_id=b.channel,
                channel_name=self.channel_name,
                message=b.message,
                action=b.action,
                block_id=b.block_id,
                response_url=self.stub.response_url(secrets.token_hex(4)),
            )
        )

    async def handle(self, line: str) -> bool:
        line = line.strip()
        if not line:
            return True
        word, _, rest = line.partition(" ")
        if word in ("/quit", "/exit"):
            return False
        if word == "/help":
            users = ", ".join(f"{u.name} ({u.role})" for u in demo.USERS)
            as_line = f"  /as <user>      act as another person: {users}\n" if self.sandbox else ""
            self.say(HELP.format(as_line=as_line, channel=self.home_channel[1]))
        elif word == "/as" and not self.sandbox:
            self.say(AS_REFUSED.format(user=f"{self.user.id}, {self.user.role}"))
        elif word == "/as":
            user = demo.user(rest.strip())
            if user is None:
                self.say("Unknown user. Try: " + ", ".join(u.name for u in demo.USERS))
            else:
                self.user = user
                self.say(f"You are now {user.name} ({user.id}, {user.role}).")
        elif word == "/channel":
            name = rest.strip().lstrip("#") or self.home_channel[1]
            self.channel_name = name
            self.channel_id = (
                self.home_channel[0] if name == self.home_channel[1] else "C" + name.upper()[:10]
            )
            self.say(f"Now typing in #{name}.")
        elif word == "/whoami":
            self.say(f"{self.user.name} ({self.user.id}, {self.user.role}) in #{self.channel_name}")
        elif line.isdigit():
            await self.press(int(line))
        elif word.startswith("/"):
            await self.slash(line)
        else:
            self.say("Type a slash command such as /payflow status, a button number, or /help.")
        return True


async def _repl(console: Console, read: Callable[[str], str]) -> None:
    console.say(
        f"PayFlow console — you are {console.user.name} ({console.user.role}) in #{console.channel_name}. "
        "/help for help."
    )

    async def follow() -> None:
        """Messages the bot posts or updates on its own (rollouts, approvals) appear as they come."""
        while True:
            await asyncio.sleep(0.3)
            console.show_new()

    follower = asyncio.create_task(follow())
    try:
        while True:
            try:
                line = await asyncio.to_thread(read, PROMPT)
            except (EOFError, KeyboardInterrupt):
                console.say("")
                return
            if not await console.handle(line):
                return
    finally:
        follower.cancel()


@contextlib.contextmanager
def open_console(*, sandbox: bool, user: str | None = None, out: TextIO = sys.stdout) -> Iterator[Console]:
    """The console with everything behind it started; stopped again on exit. In the sandbox the
    demo people and roles stand in for the catalog's and `user` is one of them (default alice);
    outside it the catalog's roles rule and `user` must be a Slack user ID the catalog lists.
    Raises ConsoleRefused (before anything starts) when it cannot run as asked."""
    from bot.config import load_catalog
    from bot.kube import Kube
    from bot.store import MemoryStore
    from sandbox.slack_api import SlackApiStub

    env = Settings.from_env()
    base = load_catalog(env.config_path)
    if sandbox:
        catalog = demo.demo_catalog(base)
        person = demo.user(user or "alice")
        if person is None:
            raise ConsoleRefused(
                f"Unknown user {user!r}; try one of: {', '.join(u.name for u in demo.USERS)}"
            )
    else:
        catalog = base
        if not user:
            raise ConsoleRefused(
                "console without --sandbox acts on a real cluster and store as exactly one catalog "
                "user: pass --as <Slack user ID> (one listed in the catalog's roles)."
            )
        person = catalog_user(catalog, user)
        if not catalog.channels.commands:
            raise ConsoleRefused("the catalog accepts /payflow in no channel (channels.commands is empty)")
        if not env.kubeconfig:
            raise ConsoleRefused("console without --sandbox needs KUBECONFIG pointing at a cluster")
    signing_secret = secrets.token_hex(16)
    with contextlib.ExitStack() as stack:
        groups = demo.USERGROUPS if sandbox else {}
        stub = stack.enter_context(SlackApiStub(bot_token="xoxb-console", usergroups=groups))
        kubeconfig, store, context = env.kubeconfig, None, catalog.env.kube_context
        sandbox_prometheus: str | None = None
        if sandbox:
            from sandbox.cluster import Cluster
            from sandbox.k8s_api import SandboxServer
            from sandbox.seed import seed, wait_until_ready

            cluster = seed(Cluster(), catalog)
            cluster.leaky_logs = True  # so `/payflow logs` shows redaction at work
            server = stack.enter_context(SandboxServer(cluster))
            wait_until_ready(cluster, catalog)
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="payflow-console-")))
            kubeconfig, store, context = str(server.write_kubeconfig(tmp / "kubeconfig")), MemoryStore(), None
            print(f"sandbox cluster on {server.url}; embedded store; Slack played locally", file=out)
            from sandbox.prometheus import for_console

            sandbox_prometheus = for_console(stack, server.url, catalog.slos.error_rate, out)
        else:
            print(
                f"cluster from {kubeconfig}; store {'Redis' if env.redis_url else 'embedded'}; "
                f"acting as {person.id} ({person.role}); Slack played locally",
                file=out,
            )
        settings = Settings(
            slack_bot_token="xoxb-console",
            slack_signing_secret=signing_secret,
            slack_api_url=stub.api_url,
            redis_url=None if sandbox else env.redis_url,
            prometheus_url=sandbox_prometheus or env.prometheus_url,
            kubeconfig=kubeconfig,
        )
        kube = Kube.connect(catalog.namespace, kubeconfig=kubeconfig, context=context)
        runtime = build_runtime(settings, catalog, store=store, kube=kube)
        yield Console(runtime, stub, SlackRequests(signing_secret), person, out, sandbox=sandbox)


def run_console(*, sandbox: bool, as_user: str | None = None) -> int:
    try:
        with open_console(sandbox=sandbox, user=as_user) as console:

            async def main() -> None:
                await console.runtime.start()
                try:
                    await _repl(console, input)
                finally:
                    await console.runtime.close()

            asyncio.run(main())
    except ConsoleRefused as exc:  # raised before anything starts
        print(f"payflow-bot console: {exc}", file=sys.stderr)
        return 2
    return 0
