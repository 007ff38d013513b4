"""Random and malformed requests for the bot's HTTP routes, reproducible from a seed.

Every request carries `MARKER` and a card number somewhere in its body, so a test can check
that no refused body reaches the log. Mostly what an attacker or a broken proxy sends: missing
or forged signatures, malformed timestamps, wrong content types, broken percent-encoding,
invalid UTF-8, payloads of the wrong JSON type or shape, deep nesting, huge bodies; plus some
correctly signed but malformed Slack payloads. Signed commands act as a viewer (read-only), so
a fuzz run can change nothing in the cluster.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import string
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

MARKER = "FUZZ-MARKER-7f3a"
CARD = "4111111111111111"
VIEWER = "U0EVE"  # in no role: the catalog's viewer default
FORM = "application/x-www-form-urlencoded"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    kind: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class Fuzzer:
    def __init__(self, seed: int, signing_secret: str, now: int, channel: str, response_url: str):
        self.rng = random.Random(seed)
        self.secret = signing_secret.encode()
        self.now = now
        self.channel = channel
        self.response_url = response_url

    # ------------------------------------------------------------------ pieces

    def text(self, n: int | None = None) -> str:
        rng = self.rng
        n = rng.choice([0, 1, 5, 20, 200]) if n is None else n
        alphabet = string.printable + "\x00\x1b\x85\u2028\u202e→€😀\ud7ff"
        return "".join(rng.choice(alphabet) for _ in range(n))

    def junk_value(self) -> Any:
        rng = self.rng
        return rng.choice(
            [None, True, 0, -1, 1.5, 10**30, "", "x", [], {}, [1, "a"], {"id": 5}, self.text(10), "\u0000"]
        )

    def deep(self, depth: int) -> str:
        opener, closer = self.rng.choice([("[", "]"), ('{"a":', "}")])
        return opener * depth + "1" + closer * depth

    def sign(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        """As Slack signs: HMAC-SHA256 over the raw bytes (slack_sdk's helper wants UTF-8)."""
        ts = str(self.now) if timestamp is None else timestamp
        digest = hmac.new(self.secret, f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
        return {"x-slack-request-timestamp": ts, "x-slack-signature": f"v0={digest}"}

    def command_form(self, text: str) -> dict[str, str]:
        return {
            "token": "x",
            "team_id": "T0PAYFLOW",
            "channel_id": self.channel,
            "channel_name": "payflow-ops",
            "user_id": VIEWER,
            "user_name": "eve",
            "command": "/payflow",
            "text": text,
            "response_url": self.response_url,
            "trigger_id": "1.2.3",
        }

    def click_payload(self) -> dict[str, Any]:
        return {
            "type": "block_actions",
            "user": {"id": VIEWER, "name": "eve"},
            "container": {"type": "message", "message_ts": "1.000001", "channel_id": self.channel},
            "channel": {"id": self.channel, "name": "payflow-ops"},
            "team": {"id": "T0PAYFLOW"},
            "response_url": self.response_url,
            "actions": [{"action_id": "payflow:approve", "value": f"{MARKER} {CARD}", "type": "button"}],
        }

    def mutate(self, doc: Any, rounds: int = 2) -> Any:
        """Replace, drop or retype a few fields anywhere in `doc`."""
        rng = self.rng
        for _ in range(rounds):
            path: list[Any] = []
            node = doc
            while isinstance(node, dict | list) and node and rng.random() < 0.7:
                key = rng.choice(list(node) if isinstance(node, dict) else range(len(node)))
                path.append(key)
                node = node[key]
            if not path:
                doc = self.junk_value()
                continue
            parent = doc
            for key in path[:-1]:
                parent = parent[key]
            if isinstance(parent, dict) and rng.random() < 0.3:
                del parent[path[-1]]
            else:
                parent[path[-1]] = self.junk_value()
        return doc

    # ------------------------------------------------------------------ requests

    def slack_body(self) -> tuple[bytes, str]:
        rng = self.rng
        choice = rng.randrange(14)
        marker = f"{MARKER} {CARD}"
        if choice == 0:
            return urlencode(self.command_form(f"{self.text()} {marker}")).encode(), "command"
        if choice == 1:
            form = self.mutate(self.command_form(marker))
            if not isinstance(form, dict):
                return json.dumps(form, default=str).encode(), "junk-form"
            return urlencode({k: str(v) for k, v in form.items()}).encode(), "mutated-command"
        if choice == 2:
            payload = self.mutate(self.click_payload(), rng.randint(1, 4))
            return urlencode({"payload": json.dumps(payload)}).encode(), "mutated-click"
        if choice == 3:
            return urlencode({"payload": self.text(30) + marker}).encode(), "bad-json"
        if choice == 4:
            value = rng.choice([[1, 2], "s", 5, None, [self.click_payload()]])
            return urlencode({"payload": json.dumps(value)}).encode(), "json-not-object"
        if choice == 5:
            depth = rng.choice([33, 100, 1000, 50_000])
            return urlencode({"payload": self.deep(depth), "x": marker}).encode(), "deep"
        if choice == 6:
            return bytes(
                rng.randrange(256) for _ in range(rng.choice([1, 50, 500]))
            ) + marker.encode(), "bytes"
        if choice == 7:
            pieces = ["%", "%G1", "%FF", "%C3%28", "%00", "&&", "==", "+", "%2", "a=b=c", ";"]
            body = "command=/payflow&text=" + "".join(rng.choice(pieces) for _ in range(8)) + quote(marker)
            return body.encode(), "percent"
        if choice == 8:
            form = urlencode(self.command_form(marker))
            return (form + "&" + form).encode(), "duplicate"
        if choice == 9:
            return "&".join(
                f"f{i}={MARKER}" for i in range(rng.choice([99, 101, 5000]))
            ).encode(), "many-fields"
        if choice == 10:
            size = rng.choice([999_000, 1_000_001, 3_000_000])
            return (b"text=" + marker.encode() + b"a" * size), "huge"
        if choice == 11:
            return b"", "empty"
        if choice == 12:
            form = self.command_form(marker)
            form["command"] = rng.choice(["/other", "", "/PAYFLOW", "/payflow\n", self.text(5)])
            return urlencode(form).encode(), "other-command"
        payload = self.click_payload()
        payload["type"] = rng.choice(["view_submission", "shortcut", "block_suggestion", "", None, 5])
        return urlencode({"payload": json.dumps(payload)}).encode(), "other-type"

    def slack_request(self) -> Request:
        rng = self.rng
        body, kind = self.slack_body()
        headers: dict[str, str] = {"content-type": FORM}
        signing = rng.randrange(10)
        if signing < 5:
            headers.update(self.sign(body))
            kind += "/signed"
        elif signing == 5:
            kind += "/unsigned"
        elif signing == 6:
            headers.update(self.sign(body + b"x"))
            kind += "/forged"
        elif signing == 7:
            bad = rng.choice(["abc", "", "-1", "1e9", "9" * 40, "+1", "١٢٣", str(self.now) + ".5", "0x10"])
            headers.update(self.sign(body, timestamp=bad))
            kind += "/bad-timestamp"
        elif signing == 8:
            headers["x-slack-signature"] = rng.choice(
                ["", "v0=", "v1=" + "0" * 64, "v0=" + "Z" * 64, "v0=" + "a" * 63 + "é"]
            )
            headers["x-slack-request-timestamp"] = str(self.now)
            kind += "/bad-signature"
        else:
            headers.update(self.sign(body, timestamp=str(self.now - rng.choice([301, 86_400, -400]))))
            kind += "/stale"
        if rng.random() < 0.15:
            headers["content-type"] = rng.choice(
                [
                    "application/json",
                    "text/plain",
                    "multipart/form-data; boundary=x",
                    "",
                    "application/x-www-form-urlencoded; charset=latin-1",
                    "APPLICATION/X-WWW-FORM-URLENCODED",
                    "garbage;;;",
                ]
            )
            kind += "/content-type"
        method = "POST" if rng.random() < 0.95 else rng.choice(["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
        return Request(method, "/slack/events", headers, body, kind)

    def alertmanager_request(self) -> Request:
        rng = self.rng
        alert = {
            "status": "firing",
            "labels": {"alertname": MARKER, "service": "api-gateway", "card": CARD},
            "annotations": {},
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": "f",
        }
        doc: Any = {
            "version": "4",
            "groupKey": "g",
            "status": "firing",
            "receiver": "payflow",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "",
            "truncatedAlerts": 0,
            "alerts": [alert],
        }
        choice = rng.randrange(6)
        if choice == 0:
            body, kind = self.deep(rng.choice([100, 5000, 100_000])).encode(), "deep"
        elif choice == 1:
            body, kind = json.dumps(self.mutate(doc, 3), default=str).encode(), "mutated"
        elif choice == 2:
            body, kind = (self.text(50) + MARKER).encode(), "not-json"
        elif choice == 3:
            body, kind = bytes(rng.randrange(256) for _ in range(100)), "bytes"
        elif choice == 4:
            body, kind = json.dumps([doc]).encode(), "list"
        else:
            body, kind = b"[" * 6_000_000, "huge"
        # never a valid token: a valid notification would post to Slack and change the store
        headers = {"content-type": "application/json"}
        auth = rng.randrange(4)
        if auth == 0:
            headers["authorization"] = "Bearer wrong-token"
        elif auth == 1:
            headers["authorization"] = "Basic " + rng.choice(["%%%", "dXNlcjpwYXNz", "é€", "a:b"])
        elif auth == 2:
            headers["authorization"] = rng.choice(["Bearer", "", "Negotiate x", "bearer  " + MARKER])
        return Request("POST", "/alertmanager", headers, body, "alertmanager/" + kind)

    def other_request(self) -> Request:
        rng = self.rng
        path = rng.choice(
            [
                "/healthz",
                "/readyz",
                "/metrics",
                "/",
                "/slack",
                "/slack/events/",
                "/%00",
                "/" + "a" * 5000,
                "/.env",
            ]
        )
        method = rng.choice(["GET", "POST", "HEAD", "DELETE", "OPTIONS"])
        return Request(method, path, {"content-type": "text/plain"}, MARKER.encode(), "other")

    def request(self) -> Request:
        roll = self.rng.random()
        if roll < 0.8:
            return self.slack_request()
        if roll < 0.9:
            return self.alertmanager_request()
        return self.other_request()

    def raw(self) -> bytes:
        """A malformed HTTP/1.1 request on the wire (for a raw socket)."""
        rng = self.rng
        return rng.choice(
            [
                b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n" + MARKER.encode(),
                b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                b"POST /slack/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
                + MARKER.encode(),
                b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nContent-Length: 5\r\n\r\n",
                b"GARBAGE " + MARKER.encode() + b"\r\n\r\n",
                b"POST /alertmanager HTTP/1.1\r\nHost: x\r\nX-Slack-Signature: \x00\r\n\r\n",
                b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort",
            ]
        )
