"""A terminal in place of Slack, like Hubot's shell adapter: the real Bolt app and the real
signature check, with the Slack Web API played by a local stand-in whose recorded messages
are printed as text. Buttons are numbered and pressed by typing their number."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from slack_bolt.request.async_request import AsyncBoltRequest

from bot.base.logs import OneLineFormatter, escape
from bot.base.redact import redact
from bot.base.roles import Role
from bot.config.catalog import Catalog
from bot.config.settings import Settings
from bot.shell.runtime import Runtime, build_runtime
from sandbox import demo
from sandbox.slack_api import BOT_NAME, BOT_USER_ID
from sandbox.slack_requests import SignedRequest, SlackRequests

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


_SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


class ConsoleRefused(Exception):
    """The console cannot start as asked; the message says what to do instead."""


def catalog_user(catalog: Catalog, user_id: str) -> demo.DemoUser:
    """The person the catalog names by this Slack user ID, with the highest role it lists them
    under. Outside the sandbox there is no Slack to read user groups from, and anyone not named
    (`*` names nobody) is refused: an identity the console cannot vouch for must not act."""
    listed = {role: getattr(catalog.roles, role.label).users for role in sorted(Role, reverse=True)}
    for role, users in listed.items():
        if _SLACK_USER_ID.match(user_id) and user_id in users:  # never "*": that names no one
            return demo.DemoUser(user_id, user_id, role.label)
    named = sorted({u for users in listed.values() for u in users if u != "*"})
    hint = f" It names: {', '.join(named)}." if named else " It names nobody yet (roles.*.users)."
    raise ConsoleRefused(
        f"{user_id!r} is not a Slack user ID listed in the catalog's roles, so the console cannot act "
        f"as them.{hint} Without --sandbox the console acts as exactly one catalog user: "
        "--as <Slack user ID>. (Members of user groups must be listed by ID: the console has no "
        "Slack to read groups from.)"
    )


_SILENT = {"auth.test", "usergroups.users.list", "chat.getPermalink", "users.info", "conversations.info"}


class Style:
    """Terminal styles for mrkdwn: ANSI escapes on a terminal, plain text when piped (or NO_COLOR)."""

    def __init__(self, ansi: bool):
        self.ansi = ansi

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.ansi else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def italic(self, text: str) -> str:
        return self._wrap("3", text)

    def strike(self, text: str) -> str:
        return self._wrap("9", text)

    def code(self, text: str) -> str:
        return self._wrap("36", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def link(self, url: str, text: str | None) -> str:
        if not text or text == url:
            return self._wrap("4", url)
        return f"{self._wrap('4', text)} ({url})"

    def block(self, text: str) -> str:
        lines = text.strip("\n").splitlines() or [""]
        return "\n".join(("│ " if self.ansi else "    ") + self.code(line) for line in lines)


_CODE_BLOCK = re.compile(r"```\n?(.*?)\n?```", re.S)
_CODE = re.compile(r"`([^`\n]+)`")
_ANGLE = re.compile(r"<([^<>\n]+)>")
_BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_STRIKE = re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])")
_FIELD = re.compile(r"^\*([^*\n]+)\*\n(.+)$", re.S)
_HOLE = re.compile("\x00(\\d+)\x00")


class Mrkdwn:
    """Slack's mrkdwn as Slack shows it: mentions and channels by name, dates by their fallback,
    links by their text, *bold* _italic_ ~strike~ `code` ```blocks``` as terminal styles."""

    def __init__(self, style: Style, user: Callable[[str], str], channel: Callable[[str], str]):
        self.style = style
        self._user = user
        self._channel = channel

    def _angle(self, inner: str) -> str:
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            return self.style.bold("@" + (label or self._user(target[1:])))
        if target.startswith("#"):
            return self.style.bold("#" + (label or self._channel(target[1:])))
        if target.startswith("!subteam^"):
            return self.style.bold(label or "@" + target[len("!subteam^") :])
        if target.startswith("!date^"):
            return label
        if target.startswith("!"):
            return self.style.bold("@" + target[1:])
        return self.style.link(target, label or None)

    def __call__(self, text: str) -> str:
        holes: list[str] = []

        def hole(rendered: str) -> str:
            holes.append(rendered)
            return f"\x00{len(holes) - 1}\x00"

        text = _CODE_BLOCK.sub(lambda m: hole("\n" + self.style.block(_unescape(m[1])) + "\n"), text)
        text = _CODE.sub(lambda m: hole(self.style.code(_unescape(m[1]))), text)
        text = _ANGLE.sub(lambda m: hole(self._angle(_unescape(m[1]))), text)
        text = _BOLD.sub(lambda m: self.style.bold(m[1]), text)
        text = _ITALIC.sub(lambda m: self.style.italic(m[1]), text)
        text = _STRIKE.sub(lambda m: self.style.strike(m[1]), text)
        text = _unescape(text)
        while _HOLE.search(text):
            text = _HOLE.sub(lambda m: holes[int(m[1])], text)
        return text.replace("\n\n\n", "\n\n")


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


MessageKey = tuple[str, str]


@dataclass
class Button:
    number: int
    channel: str
    message: dict[str, Any]
    block_id: str
    action: dict[str, Any]
    key: MessageKey
    ephemeral: bool
    gone: str | None = None  # why it can no longer be pressed (its message was updated or removed)

    @property
    def label(self) -> str:
        return str(self.action.get("text", {}).get("text", "?"))


class TextRenderer:
    """Block Kit → readable lines; buttons get numbers that stay valid for the session, until the
    message they are on is updated, replaced or deleted, as in Slack."""

    def __init__(self, mrkdwn: Mrkdwn) -> None:
        self.md = mrkdwn
        self.buttons: list[Button] = []
        self._on: dict[MessageKey, list[Button]] = {}

    def retire(self, key: MessageKey, why: str) -> None:
        for button in self._on.pop(key, []):
            button.gone = why

    def _button(
        self, where: tuple[str, dict[str, Any], MessageKey, bool], block: dict[str, Any], el: dict[str, Any]
    ) -> str:
        channel, message, key, ephemeral = where
        button = Button(
            len(self.buttons) + 1, channel, message, block.get("block_id", ""), el, key, ephemeral
        )
        self.buttons.append(button)
        self._on.setdefault(key, []).append(button)
        label = self.md(button.label)
        style = {"primary": "", "danger": " (!)"}.get(el.get("style", ""), "")
        confirm = " …" if el.get("confirm") else ""
        return self.md.style.bold(f"[{button.number}] {label}{style}{confirm}")

    def _field(self, text: str) -> str:
        """Slack lays fields out in two columns, label above value; one line each reads better here."""
        label = _FIELD.match(text)
        if label:
            return f"{self.md.style.bold(label[1])}: {self.md(label[2])}"
        return self.md(text)

    def render(
        self,
        channel: str,
        message: dict[str, Any],
        *,
        key: MessageKey,
        ephemeral: bool = False,
        compact: bool = False,
    ) -> str:
        """`compact`: for a message updated in place, leave out the fields the reader saw already."""
        md, where = self.md, (channel, message, key, ephemeral)
        blocks = message.get("blocks") or []
        if compact:
            blocks = [b for b in blocks if not b.get("fields") and b.get("type") != "context"]
        if not blocks:
            return md(message.get("text", ""))
        lines: list[str] = []
        for block in blocks:
            kind = block.get("type")
            if kind == "header":
                lines.append(md.style.bold(f"== {block['text']['text']} =="))
            elif kind == "section":
                if block.get("text"):
                    lines.append(md(block["text"]["text"]))
                lines += [self._field(f["text"]) for f in block.get("fields", [])]
                accessory = block.get("accessory")
                if accessory and accessory.get("type") == "button":
                    lines.append("   " + self._button(where, block, accessory))
            elif kind == "context":
                texts = [md(e.get("text", "")) for e in block.get("elements", [])]
                lines.append("   " + md.style.dim(" · ".join(texts)))
            elif kind == "actions":
                buttons = [self._button(where, block, e) for e in block.get("elements", [])]
                lines.append("   " + "   ".join(buttons))
            elif kind == "divider":
                lines.append("-" * 40)
            elif kind == "image":
                lines.append(f"[image: {block.get('alt_text', '')}]")
        return "\n".join(lines)


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
        request = AsyncBoltRequest(body=signed.body, headers=signed.headers)
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


class _NoticeHandler(logging.Handler):
    """Warnings the user must see, as console notices instead of log lines in the chat."""

    def __init__(self, notice: Callable[[str], None]):
        super().__init__(logging.WARNING)
        self._notice = notice

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._notice(escape(redact(f"{record.levelname.lower()}: {record.getMessage()}")))
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def console_logging(path: Path, notice: Callable[[str], None]) -> Iterator[None]:
    """While the console runs, every log line goes to `path` and only warnings reach the terminal,
    as notices; the handlers in place before are restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    file = logging.FileHandler(path, encoding="utf-8")
    file.setFormatter(OneLineFormatter("text"))  # the project's one format: redacted, one line each
    root.handlers[:] = [file, _NoticeHandler(notice)]
    level = logging.getLevelName(os.environ.get("LOG_LEVEL", "INFO").upper())
    root.setLevel(level if isinstance(level, int) else logging.INFO)
    try:
        yield
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        file.close()


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
                line = await asyncio.to_thread(read, console.prompt)
            except (EOFError, KeyboardInterrupt):
                console.say("")
                return
            if not await console.handle(line):
                return
    finally:
        follower.cancel()


@contextlib.contextmanager
def open_console(
    *,
    sandbox: bool,
    user: str | None = None,
    out: TextIO = sys.stdout,
    workdir: Path | None = None,
    ansi: bool | None = None,
) -> Iterator[Console]:
    """The console with everything behind it started; stopped again on exit. In the sandbox the
    demo people and roles stand in for the catalog's and `user` is one of them (default alice);
    outside it the catalog's roles rule and `user` must be a Slack user ID the catalog lists.
    Raises ConsoleRefused (before anything starts) when it cannot run as asked.

    `workdir` (default: a new folder under the temp dir, kept after exit) holds the console's log
    and every file the bot shares; both are named at start."""
    from bot.config.catalog import load_catalog
    from bot.gateways.kube import Kube
    from bot.gateways.store import MemoryStore
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
    workdir = workdir or Path(tempfile.mkdtemp(prefix="payflow-console-"))
    files_dir, log_path = workdir / "files", workdir / "console.log"
    files_dir.mkdir(parents=True, exist_ok=True)
    print(f"files the bot shares are saved in {files_dir}; the console's log is {log_path}", file=out)
    notices: list[Console] = []

    def notice(text: str) -> None:
        if notices:
            notices[0].notice(text)
        else:
            print(f"(console notice) {text}", file=out, flush=True)

    with contextlib.ExitStack() as stack:
        stack.enter_context(console_logging(log_path, notice))
        groups = demo.USERGROUPS if sandbox else {}
        stub = stack.enter_context(SlackApiStub(bot_token="xoxb-console", usergroups=groups))
        kubeconfig, store, context = env.kubeconfig, None, catalog.env.kube_context
        sandbox_prometheus: str | None = None
        cluster = None
        if sandbox:
            from sandbox.cluster import Cluster
            from sandbox.k8s_api import SandboxServer
            from sandbox.seed import seed, wait_until_ready

            cluster = seed(Cluster(), catalog)
            cluster.leaky_logs = True  # so `/payflow logs` shows redaction at work
            server = stack.enter_context(SandboxServer(cluster))
            wait_until_ready(cluster, catalog)
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="payflow-console-")))
            kubeconfig = str(server.write_kubeconfig(tmp / "kubeconfig", namespace=catalog.namespace))
            store, context = MemoryStore(), None
            print(f"sandbox cluster on {server.url}; embedded store; Slack played locally", file=out)
            print(f"watch and poke it from another terminal:  export KUBECONFIG={kubeconfig}", file=out)
            from sandbox.prometheus import for_console

            sandbox_prometheus = for_console(stack, server, catalog.slos.error_rate, out)
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
        console = Console(
            runtime,
            stub,
            SlackRequests(signing_secret),
            person,
            out,
            sandbox=sandbox,
            files_dir=files_dir,
            ansi=ansi,
        )
        console.cluster = cluster
        notices.append(console)
        yield console


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
