"""A terminal in place of Slack, like Hubot's shell adapter: the real Bolt app and the real
signature check, with the Slack Web API played by a local stand-in whose recorded messages
are printed as text. Buttons are numbered and pressed by typing their number."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from slack_bolt.request.async_request import AsyncBoltRequest

from bot.base.redact import redact
from bot.shell.console_render import Button, MessageKey, Mrkdwn, Style, TextRenderer
from bot.shell.runtime import Runtime
from sandbox import demo
from sandbox.slack_api import BOT_NAME, BOT_USER_ID
from sandbox.slack_requests import SignedRequest, SlackRequests

if TYPE_CHECKING:
    from sandbox.demo_data import DemoData

PROMPT = "payflow> "
HELP = """\
Type a slash command as in Slack, e.g. /payflow status   (/payflow help lists them all)
  <number>        press the button with that number (a dialog asks y/N where Slack would)
  /open <number>  open a file the bot shared (saved under {files})
{as_line}  /channel <name> type from another channel (default #{channel})
  /whoami         who and where you are
  /quit           leave (Ctrl-D works too)"""
AS_REFUSED = (
    "/as is only for the sandbox: against a real cluster and store the console acts as exactly "
    "one catalog user ({user}). Start another console with --as <Slack user ID> for another person."
)


_SILENT = {"auth.test", "usergroups.users.list", "chat.getPermalink", "users.info", "conversations.info"}


@dataclass(frozen=True)
class SavedFile:
    number: int
    path: Path
    title: str
    mimetype: str

    @property
    def is_text(self) -> bool:
        return self.mimetype.startswith("text/") or self.path.suffix in TEXT_SUFFIXES

    @property
    def is_png(self) -> bool:
        return self.path.suffix.lower() == ".png"


TEXT_SUFFIXES = {".log", ".txt", ".csv", ".json", ".md"}
INLINE_FILE_LINES = 8


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
        files_dir: Path | None = None,
        ansi: bool | None = None,
    ):
        self.runtime = runtime
        self.stub = stub
        self.cluster: Any = None  # the sandbox's simulated cluster, when there is one
        self.demo_data: DemoData | None = None  # the sandbox's data stores, starting in the background
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
        if ansi is None:
            ansi = bool(getattr(out, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")
        self.style = Style(ansi)
        self.renderer = TextRenderer(Mrkdwn(self.style, self._user_name, self._channel_name))
        self.files_dir = files_dir or Path(tempfile.mkdtemp(prefix="payflow-console-files-"))
        self.files: list[SavedFile] = []
        self.pending: Button | None = None  # a pressed button whose confirm dialog awaits y/N
        self._replies: dict[str, MessageKey | None] = {}  # response_url tag → the clicked message
        self._ephemerals = 0
        self._events: list[Any] = []  # every call the bot made to "Slack", in arrival order
        self._seen = 0
        stub.subscribe(self._events.append)

    def _user_name(self, user_id: str) -> str:
        if user_id == BOT_USER_ID:
            return BOT_NAME
        if user_id == self.user.id:
            return self.user.name
        person = demo.user(user_id) if self.sandbox else None
        return person.name if person else user_id

    def _channel_name(self, channel_id: str) -> str:
        return self.channel_names.get(channel_id, channel_id)

    @property
    def prompt(self) -> str:
        if self.pending is not None:
            confirm = self.pending.action.get("confirm") or {}
            ok = confirm.get("confirm", {}).get("text", "Yes")
            return f"{ok}? [y/N] "
        return PROMPT

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def notice(self, text: str) -> None:
        """Something the bot's process wants the user to see (a warning it logged), not a message."""
        self.say(self.style.dim(f"(console notice) {text}"))

    def show_new(self) -> None:
        """Print whatever the bot sent to Slack since last time."""
        events = self._events[self._seen :]
        self._seen += len(events)
        for event in events:
            text = self._describe(event)
            if text:
                self.say(text)

    def _new_ephemeral_key(self) -> MessageKey:
        self._ephemerals += 1
        return ("ephemeral", str(self._ephemerals))

    def _describe(self, call: Any) -> str | None:
        p = call.params
        if call.method in _SILENT or call.status != 200 or call.response.get("ok") is False:
            return None
        bot = self.style.bold(BOT_NAME)
        if call.method in ("chat.postMessage", "chat.update"):
            channel = str(call.response.get("channel") or p.get("channel", "?"))
            ts = str(p.get("ts") or call.response.get("ts", "0"))
            message = {"ts": ts, "text": p.get("text", ""), "blocks": p.get("blocks") or []}
            updated = call.method == "chat.update"
            if updated:
                self.renderer.retire((channel, ts), "its message was updated")
            thread = " (in thread)" if p.get("thread_ts") else ""
            edited = " (updated)" if updated else ""
            body = self.renderer.render(channel, message, key=(channel, ts), compact=updated)
            return f"\n{self._where(channel)} · {bot}{edited}{thread}:\n{body}"
        if call.method == "chat.delete":
            key = (str(p.get("channel", "")), str(p.get("ts", "")))
            self.renderer.retire(key, "its message was deleted")
            return f"\n{self._where(key[0])} · {bot} deleted a message."
        if call.method in ("response_url", "chat.postEphemeral"):
            return self._describe_reply(p)
        if call.method == "files.completeUploadExternal":
            return self._save_files(p, call.response)
        return None

    def _describe_reply(self, p: dict[str, Any]) -> str:
        """A response_url post replaces or deletes the clicked message when asked to, as in Slack."""
        bot = self.style.bold(BOT_NAME)
        original = self._replies.get(str(p.get("tag", "")))
        if original is not None and p.get("delete_original"):
            self.renderer.retire(original, "its message was removed")
            return f"\n({bot} removed the message with that button.)"
        public = p.get("response_type") == "in_channel"
        head = f"{self._where(self.channel_id)} · {bot}:" if public else f"(only visible to you) {bot}:"
        if original is not None and p.get("replace_original"):
            self.renderer.retire(original, "its message was replaced")
            head = head[:-1] + " (replaced the message):"
            key = original
        else:
            key = self._new_ephemeral_key()
        message = {"ts": "0", "text": p.get("text", ""), "blocks": p.get("blocks") or []}
        body = self.renderer.render(self.channel_id, message, key=key, ephemeral=not public)
        return f"\n{head}\n{body}"

    def _where(self, channel: str) -> str:
        return self.style.bold(channel if channel.startswith("#") else f"#{self._channel_name(channel)}")

    def _save_files(self, p: dict[str, Any], response: dict[str, Any]) -> str:
        """Keep every shared file under the console's folder, as Slack keeps it in the channel."""
        channel = str(p.get("channel_id") or self.channel_id)
        uploads = self.stub.uploads
        thread = " (in thread)" if p.get("thread_ts") else ""
        lines = [f"\n{self._where(channel)} · {self.style.bold(BOT_NAME)}{thread}:"]
        if p.get("initial_comment"):
            lines.append(self.renderer.md(str(p["initial_comment"])))
        for meta in response.get("files") or []:
            content = uploads.get(str(meta.get("id")), b"")
            name = Path(str(meta.get("name") or meta.get("id") or "file")).name
            number = len(self.files) + 1
            path = self.files_dir / f"{number:03d}-{name}"
            path.write_bytes(content)
            saved = SavedFile(number, path, str(meta.get("title") or name), str(meta.get("mimetype", "")))
            self.files.append(saved)
            lines.append(
                f"📎 [file {number}] {self.style.bold(saved.title)} — {path} ({len(content):,} bytes)"
            )
            if saved.is_text:
                text = content.decode("utf-8", "replace").splitlines()
                lines += ["    " + line for line in text[:INLINE_FILE_LINES]]
                if len(text) > INLINE_FILE_LINES:
                    lines.append(
                        self.style.dim(f"    … {len(text) - INLINE_FILE_LINES} more line(s) in the file")
                    )
            elif saved.is_png:
                lines.append(self.style.dim(f"    /open {number} to look at it"))
        return "\n".join(lines)

    def open_file(self, arg: str) -> None:
        if not arg.isdigit() or not 1 <= int(arg) <= len(self.files):
            have = f"1–{len(self.files)}" if self.files else "none yet"
            self.say(f"No file {arg or '?'} (files shared so far: {have}). Usage: /open <number>")
            return
        saved = self.files[int(arg) - 1]
        viewer = _viewer()
        if saved.is_png and viewer:
            subprocess.Popen(
                [viewer, str(saved.path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.say(f"Opened {saved.path} with {Path(viewer).name}.")
        elif saved.is_text:
            text = saved.path.read_text("utf-8", "replace").splitlines()
            self.say(f"{saved.path} ({len(text)} lines):")
            self.say("\n".join("    " + line for line in text[:200]))
            if len(text) > 200:
                self.say(f"    … {len(text) - 200} more line(s): see the file")
        else:
            self.say(f"No image viewer on this machine (no display): the file is {saved.path}")

    async def _dispatch(self, signed: SignedRequest, original: MessageKey | None = None) -> None:
        request = AsyncBoltRequest(body=signed.body, headers=dict(signed.headers))  # dict(): invariance
        response = await self.runtime.bolt.async_dispatch(request)
        if response.status != 200:
            self.say(f"(Slack would show an error: HTTP {response.status} {response.body})")
        elif response.body:
            try:
                ack = json.loads(response.body)
            except ValueError:
                ack = {"text": response.body}
            body = self.renderer.render(self.channel_id, ack, key=self._new_ephemeral_key(), ephemeral=True)
            self.say(f"(only visible to you) {self.style.bold(BOT_NAME)}:\n{body}")
        await self.runtime.jobs.drain()
        self.show_new()

    def _response_url(self, original: MessageKey | None) -> str:
        tag = secrets.token_hex(4)
        self._replies[tag] = original
        return str(self.stub.response_url(tag))

    async def take_demo_data(self) -> None:
        """Say which of the demo's data stores finished starting since last time, and give the
        bot the settings of those that are ready: their commands work from the next one on."""
        if self.demo_data is None:
            return
        news = self.demo_data.news()
        if not news:
            return
        for store in news:
            self.say(self.style.dim(f"\n(console) {redact(store.end_line())}"))
        settings = self.runtime.settings
        env = {**settings.env, **self.demo_data.settings()}
        await self.runtime.use_settings(dataclasses.replace(settings, env=env))

    async def slash(self, text: str) -> None:
        command, _, rest = text.partition(" ")
        await self.take_demo_data()
        starting = self.demo_data.starting_for(rest) if self.demo_data else None
        if starting is not None and command == self.runtime.settings.command:
            self.say(starting.still_starting())
            return
        await self._dispatch(
            self.requests.slash(
                rest.strip(),
                user_id=self.user.id,
                user_name=self.user.name,
                channel_id=self.channel_id,
                channel_name=self.channel_name,
                command=command,
                response_url=self._response_url(None),
            )
        )

    async def press(self, number: int) -> None:
        if not 1 <= number <= len(self.renderer.buttons):
            self.say(f"No button {number}.")
            return
        b = self.renderer.buttons[number - 1]
        if b.gone:
            self.say(f"Button {number} ({b.label}) is gone: {b.gone}. Slack no longer shows it.")
            return
        confirm = b.action.get("confirm")
        if confirm:  # Slack shows a dialog and sends nothing unless confirmed
            title = confirm.get("title", {}).get("text", "Are you sure?")
            self.say(
                f"\n{self.style.bold(title)}\n{self.renderer.md(confirm.get('text', {}).get('text', ''))}"
            )
            ok = confirm.get("confirm", {}).get("text", "Yes")
            deny = confirm.get("deny", {}).get("text", "Cancel")
            self.say(f"   y = {ok}   N = {deny}")
            self.pending = b
            return
        await self._click(b)

    async def _answer_confirm(self, line: str) -> None:
        b, self.pending = self.pending, None
        assert b is not None
        if line.strip().lower() in ("y", "yes"):
            await self._click(b)
        else:
            self.say(f"Cancelled: “{b.label}” was not pressed; nothing was sent.")

    async def _click(self, b: Button) -> None:
        if b.gone:  # updated while the dialog was open
            self.say(f"Button {b.number} ({b.label}) is gone: {b.gone}. Slack no longer shows it.")
            return
        self.say(f"({self.user.name} pressed “{b.label}”)")
        await self._dispatch(
            self.requests.button(
                user_id=self.user.id,
                user_name=self.user.name,
                channel_id=b.channel,
                channel_name=self._channel_name(b.channel),
                message=b.message,
                action=b.action,
                block_id=b.block_id,
                response_url=self._response_url(b.key),
                ephemeral=b.ephemeral,
            )
        )

    async def handle(self, line: str) -> bool:
        if self.pending is not None:
            await self._answer_confirm(line)
            return True
        line = line.strip()
        if not line:
            return True
        word, _, rest = line.partition(" ")
        if word in ("/quit", "/exit"):
            return False
        if word == "/help":
            users = ", ".join(f"{u.name} ({u.role})" for u in demo.USERS)
            as_line = f"  /as <user>      act as another person: {users}\n" if self.sandbox else ""
            self.say(HELP.format(as_line=as_line, channel=self.home_channel[1], files=self.files_dir))
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
            self.channel_names.setdefault(self.channel_id, name)
            self.say(f"Now typing in #{name}.")
        elif word == "/whoami":
            self.say(f"{self.user.name} ({self.user.id}, {self.user.role}) in #{self.channel_name}")
        elif word == "/open":
            self.open_file(rest.strip())
        elif line.isdigit():
            await self.press(int(line))
        elif word.startswith("/"):
            await self.slash(line)
        else:
            self.say("Type a slash command such as /payflow status, a button number, or /help.")
        return True


def _viewer() -> str | None:
    """An image viewer that can show a window here, if any."""
    if sys.platform == "darwin":
        return shutil.which("open")
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return shutil.which("xdg-open")
    return None


async def _read_line(read: Callable[[str], str], prompt: str) -> str:
    """`read` (input()) in a daemon thread of its own, not asyncio's executor: on Ctrl-C the
    console must stop everything it started and exit, not wait for a line that never comes (the
    executor is joined at shutdown; a daemon thread is not)."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def settle(value: str | None, error: BaseException | None) -> None:
        if answer.done():  # cancelled: the console is closing
            return
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(value or "")

    def run() -> None:
        try:
            value, error = read(prompt), None
        except BaseException as exc:  # EOFError above all: handed to the loop, which decides
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=run, name="console-input", daemon=True).start()
    return await answer


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
            await console.take_demo_data()

    follower = asyncio.create_task(follow())
    try:
        while True:
            try:
                line = await _read_line(read, console.prompt)
            except (EOFError, KeyboardInterrupt):
                console.say("")
                return
            if not await console.handle(line):
                return
    finally:
        follower.cancel()
