"""RabbitMQ through its management HTTP API: the only module that talks to the broker.

The bot reads with a user tagged `monitoring` (README: RabbitMQ): it can see nodes and queues and
can neither publish, consume nor configure. `RABBITMQ_API_URL` may carry that user's credentials
(`http://user:password@rabbitmq:15672`); they are taken out of the URL once, sent as basic auth,
and never appear in a message or a log line (only `host:port` does).

Each call has one deadline (httpx's timeout is per phase; `asyncio.timeout` makes it one) and no
retry. A queue listing is one page of at most `MAX_QUEUES` queues, the largest backlogs first,
and says how many there are in all: a cut is never silent.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:
    import httpx

MAX_QUEUES = 500  # the management API's largest page
MAX_BODY = 4 * 1024 * 1024  # a page of 500 queues in six columns is ~100 KB
_COLUMNS = (
    "name",
    "messages_ready",
    "messages_unacknowledged",
    "consumers",
    "message_stats.publish_details.rate",
    "message_stats.deliver_get_details.rate",
)


class RabbitError(Exception):
    """The broker refused or could not be read; `str()` is fit to show a user (no credentials)."""


class RabbitUnavailable(RabbitError):
    """Not reachable, or no answer within the deadline."""


@dataclass(frozen=True)
class Node:
    name: str
    running: bool
    memory_alarm: bool = False  # publishers are blocked while an alarm is on
    disk_alarm: bool = False


@dataclass(frozen=True)
class Overview:
    version: str
    cluster: str
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class QueueStats:
    name: str
    ready: int
    unacked: int
    consumers: int
    publish_rate: float  # messages/s over the management agent's last sample
    deliver_rate: float  # deliveries and basic.get per second


@dataclass(frozen=True)
class Queues:
    """One page of a vhost's queues: `matched` are those asked for (all, or the named ones) that
    exist, `total` every queue of the vhost; `queues` holds at most MAX_QUEUES of `matched`."""

    queues: tuple[QueueStats, ...]
    matched: int
    total: int


def _credentials(url: str) -> tuple[str, tuple[str, str] | None, str]:
    """(base URL without credentials, basic auth, host:port to name in messages)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the RabbitMQ management URL must look like http://user:password@host:15672")
    hostport = parts.netloc.rpartition("@")[2]
    auth = None
    if parts.username is not None:
        auth = (unquote(parts.username), unquote(parts.password or ""))
    return f"{parts.scheme}://{hostport}{parts.path.rstrip('/')}", auth, hostport


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _rate(stats: Any, key: str) -> float:
    """Absent until the queue has seen such a message: no traffic is a rate of 0."""
    details = stats.get(key) if isinstance(stats, dict) else None
    return _number(details.get("rate")) if isinstance(details, dict) else 0.0


def _queue(item: dict[str, Any]) -> QueueStats:
    stats = item.get("message_stats")
    return QueueStats(
        name=str(item.get("name", "")),
        ready=int(_number(item.get("messages_ready"))),
        unacked=int(_number(item.get("messages_unacknowledged"))),
        consumers=int(_number(item.get("consumers"))),
        publish_rate=_rate(stats, "publish_details"),
        deliver_rate=_rate(stats, "deliver_get_details"),
    )


class _TooLarge(Exception):
    """A body past MAX_BODY: reading stopped there."""


async def _bounded(resp: httpx.Response) -> bytes:
    """The body, read only up to MAX_BODY: a broker (or something in its place) that streams
    without end must cost neither the whole deadline nor the memory of what it sent."""
    body = bytearray()
    async for chunk in resp.aiter_bytes():
        body += chunk
        if len(body) > MAX_BODY:
            raise _TooLarge(MAX_BODY)
    return bytes(body)


def name_filter(names: Sequence[str]) -> str:
    """An anchored regular expression matching exactly these queue names (the API's `name` filter
    with `use_regex`; Python's escaping is valid PCRE, which the broker uses)."""
    return "^(" + "|".join(re.escape(n) for n in names) + ")$"


class RabbitMQ:
    def __init__(self, url: str, *, vhost: str = "/", timeout: float = 5.0):
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self._base, self._auth, self._where = _credentials(url)
        self.vhost = vhost
        self.timeout = timeout

    def describe(self) -> str:
        return f"RabbitMQ management API at {self._where}"

    async def _get(self, path: str, params: dict[str, str | int] | None = None) -> Any:
        """One GET, one deadline; None for a 404."""
        import httpx  # by the first call, not at start-up (≈0.1 s)

        try:
            async with (
                asyncio.timeout(self.timeout),
                httpx.AsyncClient(base_url=self._base, auth=self._auth, timeout=self.timeout) as client,
                client.stream("GET", path, params=params) as resp,
            ):
                body = await _bounded(resp)
        except _TooLarge as exc:
            raise RabbitError(
                f"{self.describe()} sent over {exc.args[0]:,} bytes for {path}; too much"
            ) from None
        except (TimeoutError, httpx.TimeoutException):
            raise RabbitUnavailable(f"{self.describe()} did not answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise RabbitUnavailable(f"{self.describe()} is not reachable ({type(exc).__name__})") from None
        if resp.status_code == 404:
            return None
        if resp.status_code == 401:
            raise RabbitError(f"{self.describe()} refused the user and password of the URL (401)")
        if resp.status_code == 403:
            raise RabbitError(
                f"{self.describe()} does not let the user read {path.split('?')[0]} (403): "
                "it needs the `monitoring` tag and access to the vhost"
            )
        if resp.status_code != 200:
            raise RabbitError(f"{self.describe()} answered {resp.status_code} to {path}")
        try:
            return json.loads(body)
        except ValueError:
            raise RabbitError(f"{self.describe()} answered {path} with something that is not JSON") from None

    async def overview(self) -> Overview:
        """The broker's version and its nodes (running, alarms): two reads at once."""
        overview, nodes = await asyncio.gather(
            self._get("/api/overview", {"columns": "rabbitmq_version,cluster_name"}),
            self._get("/api/nodes", {"columns": "name,running,mem_alarm,disk_free_alarm"}),
        )
        if not isinstance(overview, dict) or not isinstance(nodes, list):
            raise RabbitError(
                f"{self.describe()} has no /api/overview or /api/nodes: is it the management API?"
            )
        return Overview(
            version=str(overview.get("rabbitmq_version", "?")),
            cluster=str(overview.get("cluster_name", "?")),
            nodes=tuple(
                Node(
                    str(n.get("name", "?")),
                    n.get("running") is True,
                    n.get("mem_alarm") is True,
                    n.get("disk_free_alarm") is True,
                )
                for n in nodes
                if isinstance(n, dict)
            ),
        )

    async def queues(self, names: Sequence[str] = ()) -> Queues:
        """The vhost's queues (or only `names`), the largest backlogs first, one page."""
        params: dict[str, str | int] = {
            "page": 1,
            "page_size": MAX_QUEUES,
            "columns": ",".join(_COLUMNS),
            "sort": "messages_ready",
            "sort_reverse": "true",
        }
        if names:
            params |= {"name": name_filter(names), "use_regex": "true"}
        page = await self._get(f"/api/queues/{quote(self.vhost, safe='')}", params)
        if page is None:
            raise RabbitError(f"{self.describe()} has no vhost {self.vhost!r}")
        items = page.get("items") if isinstance(page, dict) else None
        if not isinstance(items, list):
            raise RabbitError(f"{self.describe()} answered the queue listing in an unknown shape")
        queues = tuple(_queue(item) for item in items if isinstance(item, dict))
        matched = int(_number(page.get("filtered_count", len(queues))))
        return Queues(queues, matched, int(_number(page.get("total_count", matched))))
