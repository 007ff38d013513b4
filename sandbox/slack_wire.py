"""What Slack's Web API reads and answers, apart from the stand-in's server: the workspace's fixed
identities, Slack's limits, argument parsing (JSON, form, multipart, query string), Slack's error
bodies, and the recorded `Call` and `Message` that tests and the console read."""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qsl

TEAM_ID = "T0PAYFLOW"
TEAM_NAME = "PayFlow"
TEAM_DOMAIN_URL = "https://payflow.slack.com/"
BOT_USER_ID = "U0PAYBOT"
BOT_ID = "B0PAYBOT"
BOT_NAME = "payflow-bot"
APP_ID = "A0PAYFLOW"

#: Slack rejects messages with more blocks than this (``invalid_blocks``) -- a real limit digests hit.
MAX_BLOCKS = 50
#: Slack refuses text longer than this with ``msg_too_long``.
MAX_TEXT_CHARS = 40_000

# Arguments Slack types as JSON; only these are decoded from form strings, so a message whose *text*
# happens to look like JSON ("[1, 2]") stays text.
_JSON_ARGS = frozenset({"blocks", "attachments", "files", "metadata", "unfurls", "view", "user_auth_blocks"})
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_QUERY = re.compile(r"\?\S*")


@dataclass(frozen=True)
class Call:
    """One recorded request, with Slack's answer, so tests can assert on both sides of the exchange.

    ``method`` is the Web API method, or ``"response_url"`` / ``"upload"`` for those endpoints. ``headers``
    keys are lower-cased. ``status``/``response`` are what the stub answered (non-JSON answers are kept as
    ``{"body": text}``).
    """

    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    """A message as it currently stands in a channel (after any ``chat.update``), for assertions/rendering."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None
    user: str
    files: list[dict[str, Any]]
    attachments: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Fault:
    status: int
    retry_after: int
    error: str | None


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, doc: Mapping[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> _Reply:
        body = json.dumps(doc, separators=(",", ":")).encode()
        return cls(status, body, "application/json; charset=utf-8", headers)

    @classmethod
    def text(cls, status: int, text: str) -> _Reply:
        return cls(status, text.encode(), "text/plain; charset=utf-8")


class _Dropped(Exception):
    """A held request released with ``drop=True``: the connection closes with no answer and nothing done."""


class _SlackError(Exception):
    """Raised by method handlers; becomes Slack's ``{"ok": false, "error": ...}``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"ok": False, "error": self.error, **self.extra}


def _missing(*names: str) -> _SlackError:
    messages = [f"[ERROR] missing required field: {name}" for name in names]
    return _SlackError("invalid_arguments", response_metadata={"messages": messages})


def _arg(params: Mapping[str, Any], name: str) -> str | None:
    """A scalar argument as Slack sees it: absent, ``None`` and ``""`` all mean "not given"."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _json_list(value: Any, error: str) -> list[dict[str, Any]]:
    """Validate blocks/attachments the way Slack does: a JSON array of objects (blocks need a ``type``)."""
    if value is None or value == "":
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise _SlackError(error)
    if error == "invalid_blocks" and (
        len(value) > MAX_BLOCKS
        or not all(isinstance(b.get("type"), str) for b in value)
        or any(_block_too_big(b) for b in value)
    ):
        raise _SlackError(error)
    return value


# Per-block limits Slack enforces (Block Kit reference): a message breaking any is refused whole.
SECTION_TEXT = 3000
SECTION_FIELDS, FIELD_TEXT = 10, 2000
HEADER_TEXT = 150
CONTEXT_ELEMENTS = 10
ACTIONS_ELEMENTS = 25


def _text_of(obj: Any) -> str:
    return obj.get("text", "") if isinstance(obj, dict) and isinstance(obj.get("text"), str) else ""


def _block_too_big(block: Mapping[str, Any]) -> bool:
    kind = block.get("type")
    if kind == "section":
        fields = block.get("fields") or []
        return (
            len(_text_of(block.get("text"))) > SECTION_TEXT
            or len(fields) > SECTION_FIELDS
            or any(len(_text_of(f)) > FIELD_TEXT for f in fields)
        )
    if kind == "header":
        return len(_text_of(block.get("text"))) > HEADER_TEXT
    if kind == "context":
        return len(block.get("elements") or []) > CONTEXT_ELEMENTS
    if kind == "actions":
        return len(block.get("elements") or []) > ACTIONS_ELEMENTS
    return False


def _mime(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _multipart(content_type: str, body: bytes) -> list[tuple[str, str | None, bytes]]:
    """(field name, filename, bytes) for each part; the email parser already speaks MIME."""
    head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts: list[tuple[str, str | None, bytes]] = []
    if not isinstance(msg, EmailMessage) or not msg.is_multipart():
        return parts
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True)
            parts.append((str(name), part.get_filename(), payload if isinstance(payload, bytes) else b""))
    return parts


def _parse_params(content_type: str, body: bytes, query: str) -> tuple[dict[str, Any], str | None]:
    """Merge query string and body arguments (body wins), as Slack does; returns (params, error)."""
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    mime = _mime(content_type)
    if body:
        if mime == "application/json":
            try:
                doc = json.loads(body)
            except ValueError:
                return params, "invalid_json"
            if not isinstance(doc, dict):
                return params, "invalid_json"
            params.update(doc)
        elif mime == "multipart/form-data":
            for name, filename, data in _multipart(content_type, body):
                params[name] = data if filename else data.decode("utf-8", "replace")
        else:
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    for key in _JSON_ARGS & params.keys():
        value = params[key]
        if isinstance(value, str) and value.lstrip().startswith(("[", "{")):
            # Undecodable JSON stays a string; the method then answers invalid_blocks etc., like Slack.
            with contextlib.suppress(ValueError):
                params[key] = json.loads(value)
    return params, None


def _upload_bytes(content_type: str, body: bytes) -> bytes:
    """The file content of an upload POST: a raw body (what slack_sdk sends) or a multipart file part."""
    if _mime(content_type) != "multipart/form-data":
        return body
    parts = _multipart(content_type, body)
    for _name, filename, data in parts:
        if filename is not None:
            return data
    return parts[0][2] if parts else b""


def _summary(call: Call) -> str:
    shown = {k: v for k, v in call.params.items() if k != "token"}
    text = json.dumps(shown, default=lambda o: f"<{type(o).__name__}>")
    if len(text) > 160:
        text = text[:157] + "..."
    outcome = call.response.get("error") or ("ok" if call.response.get("ok") else call.status)
    return f"  {call.method} {text} -> {outcome}"
