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

import copy
import dataclasses
import hmac
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote, unquote

from sandbox.httpd import KeepAliveHandler, TrackingServer
from sandbox.slack_wire import (
    _QUERY,
    APP_ID,
    BOT_ID,
    BOT_NAME,
    BOT_USER_ID,
    TEAM_DOMAIN_URL,
    TEAM_ID,
    TEAM_NAME,
    Call,
    Message,
    _arg,
    _Dropped,
    _Fault,
    _parse_params,
    _Reply,
    _SlackError,
    _summary,
    _upload_bytes,
)
from sandbox.slack_workspace import SlackWorkspace

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


class SlackApiStub(SlackWorkspace):
    """Fake Slack Web API on a local port; records requests and keeps channel state. Thread-safe."""

    def __init__(
        self,
        bot_token: str = "xoxb-test",
        host: str = "127.0.0.1",
        port: int = 0,
        usergroups: dict[str, list[str]] | None = None,
        app_token: str = "xapp-test",
    ) -> None:
        super().__init__(usergroups)
        self.bot_token = bot_token
        self.app_token = app_token  # apps.connections.open (Socket Mode) takes this one
        self._host = host
        self._port = port
        self._changed = threading.Condition(self._lock)
        self._generation = 0
        self._calls: list[Call] = []
        self._responses: list[Call] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._latency = 0.0
        self._holds: dict[str, tuple[threading.Event, list[bool]]] = {}  # method -> (released, [drop])
        self._held: dict[str, int] = {}
        self._subscribers: list[Callable[[Call], None]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Bind and serve on a daemon thread; returns self so ``stub = SlackApiStub().start()`` reads well."""
        if self._server is not None:
            raise RuntimeError("SlackApiStub already started")
        self._server = _Server((self._host, self._port), self)
        self._thread = self._server.serve_in_thread("slack-api-stub")
        return self

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stop_serving(serving=True)
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
    def connections(self) -> int:
        """TCP connections accepted since start, as Slack's edge would count them."""
        return self._server.accepted if self._server is not None else 0

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
