"""Slack's Block Kit and mrkdwn as terminal text, with numbered buttons: what the console shows in
place of the Slack client, apart from the REPL that decides when to show it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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
