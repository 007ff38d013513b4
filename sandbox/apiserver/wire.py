"""What goes over the wire: the response value the HTTP front returns, and the small parsers of
query parameters and bodies that turn bad input into 400 ``Status`` answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sandbox.apiserver.kinds import KINDS, ApiError, KindInfo

Query = dict[str, list[str]]


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes | None] | None = None  # a watch: chunks as they happen (None = a tick)

    @classmethod
    def json(cls, status: int, payload: Any) -> Response:
        return cls(status, json.dumps(payload, separators=(",", ":")).encode())

    @classmethod
    def text(cls, status: int, text: str) -> Response:
        return cls(status, text.encode(), "text/plain; charset=utf-8")

    @classmethod
    def error(cls, err: ApiError) -> Response:
        return cls.json(err.code, err.status())


def unauthorized() -> Response:
    return Response.error(ApiError(401, "Unauthorized", "Unauthorized"))


def not_found_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def method_not_allowed(method: str) -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", f"the server does not allow this method on the requested resource ({method})"
    )


def kind_for(group_version: str, plural: str) -> KindInfo:
    for info in KINDS.values():
        if info.plural == plural and info.api_version == group_version:
            return info
    raise not_found_path()


def query_int(query: Query, name: str) -> int | None:
    value = query_str(query, name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ApiError.bad_request(f"invalid value for {name}: {value!r}") from None


def query_str(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def query_bool(query: Query, name: str) -> bool:
    return (query_str(query, name) or "").lower() in ("true", "1")


def json_body(body: bytes) -> Any:
    if not body:
        raise ApiError.bad_request("the request body is empty")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ApiError.bad_request(f"error decoding request body: {exc}") from exc
