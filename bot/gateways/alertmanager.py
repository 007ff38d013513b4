"""Alertmanager, both ways: the webhook payload it sends us (version 4, validated at the edge)
and its API v2, through which we create silences. The only module that knows either format.

The API client is async httpx with a timeout on every call; `ALERTMANAGER_URL` may carry
credentials (`https://user:pass@am.example.com`), so the URL never appears in a message or log.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_ALERTS = 1000  # per notification; Alertmanager's `max_alerts` should keep it far lower


class _Edge(BaseModel):
    # Unknown fields are ignored: a newer Alertmanager may add some, and that must not page anyone.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class WebhookAlert(_Edge):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: Annotated[str, Field(min_length=1, max_length=64)]


class Webhook(_Edge):
    """Alertmanager's webhook notification, version 4: one group's alerts as Alertmanager sees them now."""

    version: Literal["4"]
    group_key: Annotated[str, Field(min_length=1, max_length=4096)] = Field(alias="groupKey")
    truncated_alerts: Annotated[int, Field(ge=0)] = Field(default=0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: Annotated[list[WebhookAlert], Field(min_length=1, max_length=MAX_ALERTS)]


class BadWebhook(ValueError):
    """A payload we will not act on; `reason` names the field and is safe to send back."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def parse_webhook(body: bytes) -> Webhook:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadWebhook(f"body is not JSON: {exc}"[:200]) from None
    except RecursionError:
        raise BadWebhook("body nests too deeply to be Alertmanager's payload") from None
    if not isinstance(data, dict):
        raise BadWebhook("body must be a JSON object (Alertmanager's webhook payload, version 4)")
    try:
        return Webhook.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(part) for part in err["loc"]) or "(top level)"
            problems.append(f"{where}: {err['msg']}")
        more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        raise BadWebhook("; ".join(problems) + more) from None


class AlertmanagerError(Exception):
    """Alertmanager refused or could not be reached; `str()` is fit to show a user."""


class Alertmanager:
    def __init__(self, url: str, *, timeout: float = 5.0):
        self._base = url.rstrip("/")
        self._timeout = timeout

    async def create_silence(
        self, matchers: dict[str, str], *, starts: datetime, ends: datetime, created_by: str, comment: str
    ) -> str:
        """`POST /api/v2/silences` with exact-match matchers; returns the silence ID."""
        body = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True}
                for k, v in sorted(matchers.items())
            ],
            "startsAt": starts.isoformat(),
            "endsAt": ends.isoformat(),
            "createdBy": created_by,
            "comment": comment,
        }
        import httpx  # by the first silence, not at start-up (≈0.1 s)

        try:
            # httpx's timeout is per phase (connect, write, read); wait_for makes it one deadline.
            # httpx never retries a request by itself (its transport's `retries` is 0).
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                resp = await asyncio.wait_for(
                    client.post(f"{self._base}/api/v2/silences", json=body), self._timeout
                )
        except (TimeoutError, httpx.TimeoutException):
            raise AlertmanagerError(f"Alertmanager did not answer within {self._timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise AlertmanagerError(f"Alertmanager not reachable: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise AlertmanagerError(f"Alertmanager answered {resp.status_code}: {resp.text.strip()[:200]}")
        try:
            return str(resp.json()["silenceID"])
        except (ValueError, KeyError, TypeError):
            raise AlertmanagerError("Alertmanager's answer had no silenceID") from None
