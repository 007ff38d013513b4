"""A local stand-in for the Slack Web API.

Why it exists: the test-suite and the interactive console need the bot to talk to something that answers
the way slack.com does -- same JSON shapes, same error codes, same ``429`` + ``Retry-After`` dance, same
three-step ``files_upload_v2`` flow -- without a workspace or a network. Point the real clients at it::

    with SlackApiStub(usergroups={"S0ONCALL": ["U0ALICE"]}) as stub:
        client = AsyncWebClient(token="xoxb-test", base_url=stub.api_url)
        ...
        stub.wait_for(lambda s: s.messages("#payflow-ops"))

Standard library only, so it runs wherever the bot runs. Everything the bot sends is recorded (``calls``,
``responses``, ``uploads``) and the *current* channel state is kept (``messages()`` after updates and
deletes) so tests assert on outcomes and the console can render them (``subscribe``).

What slack_sdk sends (checked against slack_sdk 3.48), which is why every request shape is accepted:

* ``chat.postMessage`` / ``chat.update`` / ``chat.postEphemeral``: a JSON body, token in
  ``Authorization: Bearer``.
* most other methods (``auth.test``, ``chat.delete``, ``files.*``, ``users.info``, ...): ``params=`` -- the
  sync ``WebClient`` always POSTs them form-encoded, the ``AsyncWebClient`` (aiohttp) puts them in the
  query string (with GET for ``chat.getPermalink``, ``conversations.info``, ``users.info`` and
  ``usergroups.users.list``). ``files.completeUploadExternal``'s ``files`` is a JSON string inside that.
* the upload step POSTs the raw bytes to ``upload_url`` with no token (urllib labels them
  ``application/x-www-form-urlencoded``, aiohttp ``application/octet-stream``) and wants a 200.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import email.parser
import email.policy
import hashlib
import hmac
import itertools
import json
import logging
import mimetypes
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl, quote, unquote

from sandbox.httpd import KeepAliveHandler, TrackingServer

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_NAME",
    "BOT_USER_ID",
    "TEAM_DOMAIN_URL",
    "TEAM_ID",
    "TEAM_NAME",
    "Call",
    "Message",
    "SlackApiStub",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

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
        len(value) > MAX_BLOCKS or not all(isinstance(b.get("type"), str) for b in value)
    ):
        raise _SlackError(error)
    return value


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


class _Handler(KeepAliveHandler):
    server_version = "SlackApiStub/1.0"
    server: _Server

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        try:
            body = self.read_body()
        except ValueError:
            self.close_connection = True
            self._send(_Reply.text(400, "invalid_request"))
            return
        try:
            reply = self.server.stub._route(self.command, self.path, self.headers.items(), body)
        except _Dropped:
            self.close_connection = True
            return
        except Exception:
            log.exception("slack stub failed on %s %s", self.command, _QUERY.sub("", self.path))
            reply = _Reply.json(500, {"ok": False, "error": "internal_error"})
        self._send(reply)

    def _send(self, reply: _Reply) -> None:
        self.send_body(reply.status, reply.content_type, reply.body, reply.headers)

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet by default; query strings are dropped because a token may ride in one.
        log.debug("slack stub: %s", _QUERY.sub("", format % args))


class _Server(TrackingServer):
    def __init__(self, address: tuple[str, int], stub: SlackApiStub) -> None:
        self.stub = stub
        super().__init__(address, _Handler)


class SlackApiStub:
    """Fake Slack Web API on a local port; records requests and keeps channel state. Thread-safe."""

    def __init__(
        self,
        bot_token: str = "xoxb-test",
        host: str = "127.0.0.1",
        port: int = 0,
        usergroups: dict[str, list[str]] | None = None,
        app_token: str = "xapp-test",
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token  # apps.connections.open (Socket Mode) takes this one
        self.socket_url = "ws://127.0.0.1:9/"  # what apps.connections.open hands out; tests point it
        self._host = host
        self._port = port
        self._usergroups = {group: list(users) for group, users in (usergroups or {}).items()}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._generation = 0
        self._calls: list[Call] = []
        self._responses: list[Call] = []
        self._messages: dict[tuple[str, str], Message] = {}
        self._uploads: dict[str, bytes] = {}
        self._pending_files: dict[str, dict[str, Any]] = {}
        self._name_to_id: dict[str, str] = {}
        self._id_to_name: dict[str, str] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._latency = 0.0
        self._holds: dict[str, tuple[threading.Event, list[bool]]] = {}  # method -> (released, [drop])
        self._held: dict[str, int] = {}
        self._last_ts_us = 0
        self._file_numbers = itertools.count(1)
        self._subscribers: list[Callable[[Call], None]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "chat.delete": self._chat_delete,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "usergroups.users.list": self._usergroups_users_list,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Bind and serve on a daemon thread; returns self so ``stub = SlackApiStub().start()`` reads well."""
        if self._server is not None:
            raise RuntimeError("SlackApiStub already started")
        self._server = _Server((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="slack-api-stub",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self if self._server is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://host:port/`` of the running server."""
        if self._server is None:
            raise RuntimeError("SlackApiStub is not started")
        host = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host
        return f"http://{host}:{self._server.server_address[1]}/"

    @property
    def api_url(self) -> str:
        """Web API base for ``WebClient(base_url=...)``; ends in "/" as slack_sdk urljoins method names."""
        return self.base_url + "api/"

    def response_url(self, tag: str) -> str:
        """A ``response_url`` for a fake slash command/interaction; posts to it are recorded with ``tag``."""
        return f"{self.base_url}response/{quote(tag, safe='')}"

    # ------------------------------------------------------------------ configuration

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int = 1,
        error: str | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls to ``method`` (or ``"response_url"``) fail, to exercise the
        bot's error paths.

        Without ``error``: HTTP ``status`` (429 adds ``Retry-After: retry_after`` and Slack's
        ``{"ok": false, "error": "ratelimited"}``). With ``error``: HTTP 200
        ``{"ok": false, "error": error}``. Faults apply after authentication, like Slack's limiter.
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        if error is None and status < 400:
            raise ValueError("status must be an HTTP error (>= 400) when no error code is given")
        if retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        fault = _Fault(status=status, retry_after=int(retry_after), error=error)
        with self._lock:
            self._faults.setdefault(method, deque()).extend([fault] * times)

    def hold(self, method: str) -> None:
        """Keep requests to ``method`` (or ``"response_url"``) waiting, unanswered, until `release`:
        a Slack that is slow at exactly the wrong moment, e.g. to kill the bot mid-delivery."""
        with self._lock:
            self._holds[method] = (threading.Event(), [False])
            self._held[method] = 0

    def held(self, method: str) -> int:
        """How many requests to ``method`` have been held so far."""
        with self._lock:
            return self._held.get(method, 0)

    def release(self, method: str, *, drop: bool = False) -> None:
        """Let held requests through; ``drop=True`` closes their connections instead, unprocessed
        (what a client sees when its request never reached Slack)."""
        with self._lock:
            gate = self._holds.pop(method, None)
        if gate is not None:
            gate[1][0] = drop
            gate[0].set()

    def _wait_if_held(self, method: str) -> None:
        with self._changed:
            gate = self._holds.get(method)
            if gate is None:
                return
            self._held[method] = self._held.get(method, 0) + 1
            self._generation += 1
            self._changed.notify_all()
        gate[0].wait()
        if gate[1][0]:
            raise _Dropped

    def set_latency(self, seconds: float) -> None:
        """Delay every answer, to exercise timeouts and "still working" UX."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        with self._lock:
            self._latency = float(seconds)

    def subscribe(self, callback: Callable[[Call], None]) -> Callable[[], None]:
        """Call ``callback(event)`` after every recorded request; returns an unsubscribe function.

        Runs on the server thread *before* the HTTP answer goes out, so by the time the bot sees the
        answer its observers have too; keep callbacks quick. Exceptions are logged and swallowed.
        Events are API calls, ``"response_url"`` posts and ``"upload"`` (file bytes) posts.
        """
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def reset(self) -> None:
        """Forget recorded calls, messages, uploads, pending faults and latency (IDs stay unique/stable)."""
        with self._changed:
            self._calls.clear()
            self._responses.clear()
            self._messages.clear()
            self._uploads.clear()
            self._pending_files.clear()
            self._faults.clear()
            self._latency = 0.0
            for gate, _drop in self._holds.values():
                gate.set()
            self._holds.clear()
            self._generation += 1
            self._changed.notify_all()

    # ------------------------------------------------------------------ inspection

    @property
    def calls(self) -> list[Call]:
        """Snapshot of every Web API request, in arrival order (including failed ones)."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        """Snapshot of the calls to one method, e.g. to count a retried ``chat.postMessage``."""
        with self._lock:
            return [call for call in self._calls if call.method == method]

    @property
    def responses(self) -> list[Call]:
        """Posts to ``response_url``s: ``Call(method="response_url", params={..., "tag": tag})``."""
        with self._lock:
            return list(self._responses)

    @property
    def uploads(self) -> dict[str, bytes]:
        """File bytes received on upload URLs, by file ID."""
        with self._lock:
            return dict(self._uploads)

    def messages(self, channel: str | None = None) -> list[Message]:
        """Current messages (oldest first), optionally for one channel given by ID or ``#name``."""
        with self._lock:
            wanted = None if channel is None else self._lookup_channel(channel)
            found = [m for (c, _ts), m in self._messages.items() if wanted is None or c == wanted]
            return copy.deepcopy(sorted(found, key=lambda m: (len(m.ts), m.ts)))

    def channel_id(self, name: str) -> str:
        """The stable fake ID ``chat.postMessage`` answers for ``#name`` (``#pay-ops`` -> ``CPAYOPS``)."""
        key = name.removeprefix("#")
        with self._lock:
            known = self._name_to_id.get(key)
            if known is not None:
                return known
            readable = "C" + re.sub(r"[^A-Z0-9]", "", key.upper())[:20]
            channel = readable
            if len(readable) < 3 or readable in self._id_to_name:
                digest = hashlib.sha1(key.encode()).digest()
                channel = readable + base64.b32encode(digest).decode("ascii")[:6]
            self._name_to_id[key] = channel
            self._id_to_name[channel] = key
            return channel

    def wait_for(self, predicate: Callable[[SlackApiStub], T], timeout: float = 5.0) -> T:
        """Block until ``predicate(stub)`` is truthy and return it; the bot answers asynchronously.

        Woken by every recorded request (no busy sleep). The predicate runs outside the stub's lock, so it
        may call anything. Raises AssertionError with a summary of what *was* recorded on timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = self._generation
            result = predicate(self)
            if result:
                return result
            with self._changed:
                while self._generation == seen:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise AssertionError(self._timeout_report(predicate, timeout))
                    self._changed.wait(remaining)

    def _timeout_report(self, predicate: Callable[..., Any], timeout: float) -> str:
        with self._lock:
            calls, responses, uploads = list(self._calls), list(self._responses), len(self._uploads)
        name = getattr(predicate, "__qualname__", repr(predicate))
        lines = [f"wait_for({name}) still false after {timeout:g}s."]
        lines.append(f"{len(calls)} Web API call(s){' (last 20)' if len(calls) > 20 else ''}:")
        lines += [_summary(call) for call in calls[-20:]] or ["  (none)"]
        lines.append(f"{len(responses)} response_url post(s):")
        lines += [_summary(call) for call in responses[-10:]] or ["  (none)"]
        lines.append(f"{uploads} uploaded file(s).")
        return "\n".join(lines)

    # ------------------------------------------------------------------ HTTP routing

    def _route(self, command: str, raw_path: str, headers: Iterable[tuple[str, str]], body: bytes) -> _Reply:
        path, _, query = raw_path.partition("?")
        lowered = {name.lower(): value for name, value in headers}
        with self._lock:
            latency = self._latency
        if latency:
            time.sleep(latency)
        if path.startswith("/api/"):
            self._wait_if_held(unquote(path[len("/api/") :]))
            return self._serve_api(unquote(path[len("/api/") :]), query, lowered, body)
        if command == "POST" and path.startswith("/response/"):
            self._wait_if_held("response_url")
            return self._serve_response_url(unquote(path[len("/response/") :]), lowered, body)
        if command == "POST" and path.startswith("/upload/"):
            return self._serve_upload(unquote(path[len("/upload/") :]), lowered, body)
        return _Reply.text(404, "not_found")

    def _serve_api(self, method: str, query: str, headers: dict[str, str], body: bytes) -> _Reply:
        params, parse_error = _parse_params(headers.get("content-type", ""), body, query)
        status = 200
        extra: tuple[tuple[str, str], ...] = (("X-Slack-Req-Id", secrets.token_hex(16)),)
        try:
            handler = self._methods.get(method)
            if handler is None:
                raise _SlackError("unknown_method", req_method=method)
            if parse_error is not None:
                raise _SlackError(parse_error)
            self._authenticate(headers, params, self.app_token if method == "apps.connections.open" else None)
            fault = self._take_fault(method)
            if fault is not None:
                if fault.error is not None:
                    raise _SlackError(fault.error)
                status = fault.status
                if status == 429:
                    extra += (("Retry-After", str(fault.retry_after)),)
                raise _SlackError("ratelimited" if status == 429 else "internal_error")
            answer = {"ok": True, **handler(params)}
        except _SlackError as exc:
            answer = exc.body()
        self._record(Call(method, params, headers, time.time(), status, answer), self._calls)
        return _Reply.json(status, answer, extra)

    def _serve_response_url(self, tag: str, headers: dict[str, str], body: bytes) -> _Reply:
        fault = self._take_fault("response_url")
        if fault is not None:  # Slack's response_url answers plain text, like the success case
            retry = (("Retry-After", str(fault.retry_after)),) if fault.status == 429 else ()
            call = Call("response_url", {"tag": tag}, headers, time.time(), fault.status, {"body": "fault"})
            self._record(call, None)
            reply = _Reply.text(fault.status, fault.error or "internal_error")
            return dataclasses.replace(reply, headers=retry)
        try:
            doc = json.loads(body or b"null")
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            status, text, params = 400, "invalid_payload", {"tag": tag}
        elif not (
            doc.get("text") or doc.get("blocks") or doc.get("attachments") or doc.get("delete_original")
        ):
            status, text, params = 400, "no_text", {**doc, "tag": tag}
        else:
            status, text, params = 200, "ok", {**doc, "tag": tag}
        call = Call("response_url", params, headers, time.time(), status, {"body": text})
        self._record(call, self._responses)
        return _Reply.text(status, text)

    def _serve_upload(self, file_id: str, headers: dict[str, str], body: bytes) -> _Reply:
        data = _upload_bytes(headers.get("content-type", ""), body)
        with self._lock:
            known = file_id in self._pending_files
            if known:
                self._uploads[file_id] = data
        status, text = (200, f"OK - {len(data)}") if known else (404, "file_not_found")
        params = {"file_id": file_id, "length": len(data)}
        self._record(Call("upload", params, headers, time.time(), status, {"body": text}), None)
        return _Reply.text(status, text)

    def _authenticate(
        self, headers: Mapping[str, str], params: Mapping[str, Any], expected: str | None = None
    ) -> None:
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer":
                raise _SlackError("invalid_auth")
            token = token.strip()
        else:
            token = _arg(params, "token") or ""
        if not token:
            raise _SlackError("not_authed")
        if not hmac.compare_digest(token.encode(), (expected or self.bot_token).encode()):
            raise _SlackError("invalid_auth")

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(method)
            return queue.popleft() if queue else None

    def _record(self, call: Call, into: list[Call] | None) -> None:
        with self._changed:
            if into is not None:
                into.append(call)
            self._generation += 1
            self._changed.notify_all()
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(call)
            except Exception:
                log.exception("slack stub subscriber %r failed", callback)

    # ------------------------------------------------------------------ state helpers (hold the lock)

    def _next_ts(self) -> str:
        """Slack's message ID: "<epoch seconds>.<6 digits>", unique and increasing."""
        with self._lock:
            self._last_ts_us = max(time.time_ns() // 1000, self._last_ts_us + 1)
            seconds, micros = divmod(self._last_ts_us, 1_000_000)
            return f"{seconds}.{micros:06d}"

    def _lookup_channel(self, value: str) -> str:
        if not value.startswith("#") and _CHANNEL_ID.match(value):
            return value
        return self.channel_id(value)

    def _channel_arg(self, params: Mapping[str, Any], name: str = "channel", *, names: bool = False) -> str:
        """Resolve a channel argument. Only the posting methods accept ``#name`` (and a user ID, which
        opens a DM); everything else needs the ID, as on Slack -- a common bug this surfaces early."""
        value = _arg(params, name)
        if value is None:
            raise _SlackError("channel_not_found")
        if not value.startswith("#") and _CHANNEL_ID.match(value):
            return value
        if names and _USER_ID.match(value):
            return "D" + value[1:]
        if names and not value.startswith("@") and not any(ch.isspace() for ch in value):
            return self.channel_id(value)
        raise _SlackError("channel_not_found")

    def _content(self, params: Mapping[str, Any], *, required: bool) -> tuple[str, list[Any], list[Any]]:
        text = _arg(params, "text") or ""
        blocks = _json_list(params.get("blocks"), "invalid_blocks")
        attachments = _json_list(params.get("attachments"), "invalid_attachments")
        if required and not (text or blocks or attachments):
            raise _SlackError("no_text")
        if len(text) > MAX_TEXT_CHARS:
            raise _SlackError("msg_too_long")
        return text, blocks, attachments

    @staticmethod
    def _message_json(message: Message) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": "message",
            "user": message.user,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "text": message.text,
            "ts": message.ts,
            "team": TEAM_ID,
            "bot_profile": {
                "id": BOT_ID,
                "app_id": APP_ID,
                "name": BOT_NAME,
                "team_id": TEAM_ID,
                "deleted": False,
            },
        }
        if message.blocks:
            doc["blocks"] = message.blocks
        if message.attachments:
            doc["attachments"] = message.attachments
        if message.files:
            doc["files"] = message.files
            doc["upload"] = True
        if message.thread_ts:
            doc["thread_ts"] = message.thread_ts
        return doc

    def _find(self, channel: str, ts: str | None) -> Message:
        message = self._messages.get((channel, ts or ""))
        if message is None:
            raise _SlackError("message_not_found")
        return message

    # ------------------------------------------------------------------ Web API methods

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        """Socket Mode: a websocket URL to connect to (a test's local websocket server)."""
        return {"url": self.socket_url}

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": TEAM_DOMAIN_URL,
            "team": TEAM_NAME,
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_arg(params, names=True)
        text, blocks, attachments = self._content(params, required=True)
        with self._lock:
            ts = self._next_ts()
            message = Message(
                channel, ts, text, blocks, _arg(params, "thread_ts"), BOT_USER_ID, [], attachments
            )
            self._messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "message": self._message_json(message)}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_arg(params)
        text, blocks, attachments = self._content(params, required=True)
        with self._lock:
            old = self._find(channel, _arg(params, "ts"))
            message = dataclasses.replace(
                old,
                text=text if _arg(params, "text") is not None else old.text,
                blocks=blocks if "blocks" in params else old.blocks,
                attachments=attachments if "attachments" in params else old.attachments,
            )
            self._messages[(channel, old.ts)] = message
        return {
            "channel": channel,
            "ts": old.ts,
            "text": message.text,
            "message": self._message_json(message),
        }

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        self._channel_arg(params, names=True)
        user = _arg(params, "user")
        if user is None or not _USER_ID.match(user):
            raise _SlackError("user_not_found")
        self._content(params, required=True)
        return {"message_ts": self._next_ts()}  # ephemeral: never part of the channel's history

    def _chat_get_permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_arg(params)
        with self._lock:
            message = self._find(channel, _arg(params, "message_ts"))
        permalink = f"{TEAM_DOMAIN_URL}archives/{channel}/p{message.ts.replace('.', '')}"
        if message.thread_ts and message.thread_ts != message.ts:
            permalink += f"?thread_ts={message.thread_ts}&cid={channel}"
        return {"channel": channel, "permalink": permalink}

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_arg(params)
        with self._lock:
            message = self._find(channel, _arg(params, "ts"))
            del self._messages[(channel, message.ts)]
        return {"channel": channel, "ts": message.ts}

    def _files_get_upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        filename, length = _arg(params, "filename"), _arg(params, "length")
        missing = [name for name, value in (("filename", filename), ("length", length)) if value is None]
        if missing:
            raise _missing(*missing)
        try:
            declared = int(str(length))
        except ValueError:
            raise _SlackError(
                "invalid_arguments", response_metadata={"messages": ["[ERROR] invalid length"]}
            ) from None
        file_id = f"F{next(self._file_numbers):010d}"
        with self._lock:
            self._pending_files[file_id] = {
                "name": filename,
                "length": declared,
                "alt_txt": _arg(params, "alt_txt"),
                "snippet_type": _arg(params, "snippet_type"),
            }
        return {"upload_url": f"{self.base_url}upload/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        files = params.get("files")
        if (
            not isinstance(files, list)
            or not files
            or not all(isinstance(f, dict) and f.get("id") for f in files)
        ):
            raise _missing("files")
        targets: list[str] = []
        if _arg(params, "channel_id") is not None:
            targets.append(self._channel_arg(params, "channel_id"))
        for channel in (_arg(params, "channels") or "").split(","):
            if channel.strip():
                targets.append(self._channel_arg({"channel": channel.strip()}))
        comment = _arg(params, "initial_comment") or ""
        thread_ts = _arg(params, "thread_ts")
        with self._lock:
            if any(str(f["id"]) not in self._uploads for f in files):
                raise _SlackError("file_not_found")
            now = int(time.time())
            shared: list[dict[str, Any]] = []
            for item in files:
                file_id = str(item["id"])
                meta = self._pending_files[file_id]
                name = str(meta["name"])
                shared.append(
                    {
                        "id": file_id,
                        "created": now,
                        "timestamp": now,
                        "name": name,
                        "title": str(item.get("title") or name),
                        "mimetype": mimetypes.guess_type(name)[0] or "application/octet-stream",
                        "filetype": name.rsplit(".", 1)[-1].lower() if "." in name else "binary",
                        "user": BOT_USER_ID,
                        "user_team": TEAM_ID,
                        "size": len(self._uploads[file_id]),
                        "mode": "hosted",
                        "is_external": False,
                        "is_public": bool(targets),
                        "url_private": f"https://files.slack.com/files-pri/{TEAM_ID}-{file_id}/{quote(name)}",
                        "url_private_download": (
                            f"https://files.slack.com/files-pri/{TEAM_ID}-{file_id}/download/{quote(name)}"
                        ),
                        "permalink": f"{TEAM_DOMAIN_URL}files/{BOT_USER_ID}/{file_id}/{quote(name)}",
                        "channels": list(targets),
                        **({"alt_txt": meta["alt_txt"]} if meta.get("alt_txt") else {}),
                    }
                )
            for channel in targets:
                ts = self._next_ts()
                self._messages[(channel, ts)] = Message(
                    channel, ts, comment, [], thread_ts, BOT_USER_ID, copy.deepcopy(shared)
                )
        return {"files": shared}

    def _usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        group = _arg(params, "usergroup")
        if group is None:
            raise _missing("usergroup")
        with self._lock:
            users = self._usergroups.get(group)
        if users is None:
            raise _SlackError("no_such_subteam")
        return {"users": list(users)}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = _arg(params, "user")
        if user is None or not _USER_ID.match(user):
            raise _SlackError("user_not_found")
        is_bot = user == BOT_USER_ID
        name = BOT_NAME if is_bot else f"user.{user[1:].lower()}"
        real_name = "PayFlow Bot" if is_bot else f"User {user}"
        return {
            "user": {
                "id": user,
                "team_id": TEAM_ID,
                "name": name,
                "real_name": real_name,
                "deleted": False,
                "is_bot": is_bot,
                "tz": "America/New_York",
                "tz_label": "Eastern Standard Time",
                "tz_offset": -18000,
                "profile": {"real_name": real_name, "display_name": name},
            }
        }

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_arg(params)
        if channel.startswith("D"):
            return {"channel": {"id": channel, "is_im": True, "is_channel": False, "user": "U" + channel[1:]}}
        with self._lock:
            name = self._id_to_name.get(channel, channel.lower())
        return {
            "channel": {
                "id": channel,
                "name": name,
                "is_channel": channel.startswith("C"),
                "is_group": channel.startswith("G"),
                "is_private": channel.startswith("G"),
                "is_im": False,
                "is_archived": False,
                "is_member": True,
            }
        }
