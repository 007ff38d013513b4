"""Alertmanager groups as Slack messages: one message per `groupKey`, updated in place as its
alerts fire and resolve, with a thread reply for each change, and the buttons to act on it.

The group's state lives in the store (`alertgroup:<hash of groupKey>`), so a restart or a second
replica updates the same message instead of posting another. A new group is claimed with an
atomic `create` before anything is posted; every later change is a compare-and-set on the
record's `version`, so two notifications can never both win, and one that changes nothing (a
repeat, a retry, a duplicate from the other replica) is dropped without touching Slack.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.base.messages import MessageRef
from bot.base.redact import clip
from bot.base.roles import Role
from bot.domain.gate.engine import Gate
from bot.domain.views import AlertChanges, AlertGroupCard, AlertLine, Button, Confirm, Notice, Reply, Tone
from bot.gateways.alertmanager import AlertmanagerError, Webhook, WebhookAlert
from bot.gateways.outbox import current_job
from bot.gateways.store import AuditEntry
from handlers.base import Context, Deps, Refused
from handlers.registry import action

log = logging.getLogger(__name__)

PREFIX = "alertgroup:"
GROUP_TTL = 7 * 86_400  # a group quiet for a week starts a new message
CLAIM_TTL = 60  # a replica that dies between claiming and posting frees the group this soon
CLAIM_WAIT = 15.0  # how long another replica's claim is waited for before giving up
MAX_KEPT = 100  # alerts kept (and shown) per group; firing ones first
MAX_COUNTED = 20_000  # alerts whose state is kept (fingerprint, status, start, name) to count them all
SILENCE = timedelta(hours=1)
SWITCH_WINDOW = timedelta(hours=1)  # a traffic switch this recent makes "Roll back" worth offering


def group_id(group_key: str) -> str:
    return hashlib.sha256(group_key.encode()).hexdigest()[:32]


def record_key(gid: str) -> str:
    return f"{PREFIX}{gid}"


@dataclass(frozen=True)
class AlertNotification:
    """An accepted webhook notification, handed from the web process to the one that runs jobs."""

    payload: Webhook

    async def run(self, deps: Deps) -> None:
        await handle_notification(deps, self.payload)


# --- the group's record ----------------------------------------------------------------------


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at else None


def _alert(a: WebhookAlert, common: dict[str, str]) -> dict[str, Any]:
    """What we keep of one alert. A firing alert's endsAt is only Alertmanager's expiry guess and
    moves with every notification, so it is left out: otherwise no repeat would ever look equal."""
    own = ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()) if k not in common and k != "alertname")
    resolved = a.status == "resolved"
    return {
        "name": a.labels.get("alertname", "alert"),
        "status": a.status,
        "summary": clip(a.annotations.get("summary") or a.annotations.get("description") or "", 300),
        "instance": clip(own, 120),
        "starts_at": _iso(a.starts_at),
        "ends_at": _iso(a.ends_at) if resolved and a.ends_at and a.ends_at.year > 1 else None,
    }


def _merge(old: dict[str, dict[str, Any]], payload: Webhook, now: datetime) -> dict[str, dict[str, Any]]:
    """The group as it stands after this notification.

    The notification lists every active alert of the group, so one we knew as firing that is no
    longer listed has ended (unless Alertmanager truncated the list). A notification that says an
    alert fires after we saw that very alert (same start) resolve is a late retry: ignored.
    Resolved alerts stay on the message, so it still tells the whole story.
    """
    new = {a.fingerprint: _alert(a, payload.common_labels) for a in payload.alerts}
    merged: dict[str, dict[str, Any]] = {}
    for fp, prev in old.items():
        if fp in new:
            continue
        if prev["status"] == "firing" and not payload.truncated_alerts:
            prev = {**prev, "status": "resolved", "ends_at": now.isoformat()}
        merged[fp] = prev
    for fp, alert in new.items():
        seen = old.get(fp)
        stale = (
            seen is not None
            and seen["status"] == "resolved"
            and alert["status"] == "firing"
            and seen["starts_at"] == alert["starts_at"]
        )
        merged[fp] = seen if stale and seen is not None else alert
    ordered = sorted(
        merged.items(), key=lambda kv: (kv[1]["status"] != "firing", kv[1]["starts_at"] or "", kv[0])
    )
    return dict(ordered[:MAX_COUNTED])


def _known(record: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every alert of the group the record knows: the kept ones whole, the others (beyond
    MAX_KEPT) from their state alone, so that counts and changes cover all of them."""
    if not record:
        return {}
    kept: dict[str, dict[str, Any]] = record["alerts"]
    known: dict[str, dict[str, Any]] = {}
    for fp, (status, starts_at, name) in (record.get("states") or {}).items():
        known[fp] = kept.get(fp) or {
            "name": name,
            "status": status,
            "summary": "",
            "instance": "",
            "starts_at": starts_at,
            "ends_at": None,
        }
    return {**known, **{fp: a for fp, a in kept.items() if fp not in known}}


def _title(payload: Webhook) -> str:
    name = payload.group_labels.get("alertname") or payload.common_labels.get("alertname")
    if name:
        return name
    names = sorted({a.labels.get("alertname", "alert") for a in payload.alerts})
    return names[0] + (f" +{len(names) - 1} more" if len(names) > 1 else "")


def _group(payload: Webhook, deps: Deps, old: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    routing = deps.catalog.alerts
    known = _merge(_known(old), payload, now)
    alerts = dict(list(known.items())[:MAX_KEPT])
    return {
        "group_key": payload.group_key,
        "title": _title(payload),
        "status": "firing" if any(a["status"] == "firing" for a in alerts.values()) else "resolved",
        "service": payload.common_labels.get(routing.service_label),
        "severity": payload.common_labels.get(routing.severity_label),
        "group_labels": dict(sorted(payload.group_labels.items())),
        "common_labels": dict(sorted(payload.common_labels.items())),
        "source": payload.external_url,
        "truncated": payload.truncated_alerts,
        "alerts": alerts,
        "states": {fp: [a["status"], a["starts_at"], a["name"]] for fp, a in known.items()},
    }


_COMPARED = ("title", "status", "alerts", "states", "truncated")


def _same_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in _COMPARED)


def _line(a: dict[str, Any]) -> AlertLine:
    def when(text: str | None) -> datetime | None:
        return datetime.fromisoformat(text) if text else None

    return AlertLine(
        a["name"], a["status"], a["summary"], when(a["starts_at"]), when(a["ends_at"]), a["instance"]
    )


async def _recent_switch(deps: Deps, service: str, now: datetime) -> bool:
    """Did the service's traffic switch within the last hour (the deploy engineer's change records)?"""
    for change in await Gate(deps).records.latest(service):
        if not change.switched_at:
            continue
        try:
            at = datetime.fromisoformat(change.switched_at)
        except ValueError:
            continue
        if at.tzinfo and now - SWITCH_WINDOW <= at <= now + timedelta(minutes=1):
            return True
    return False


async def card(deps: Deps, gid: str, record: dict[str, Any]) -> AlertGroupCard:
    now = datetime.now(UTC)
    service: str | None = record.get("service")
    known = service if service in deps.catalog.services else None  # the service, when the catalog has it
    silence = record.get("silence") or {}
    until = datetime.fromisoformat(silence["until"]) if silence.get("until") else None
    silenced = until is not None and until > now
    routing = deps.catalog.alerts
    shown = {"alertname", routing.service_label, routing.severity_label}  # already in the headline
    buttons: list[Button] = []
    if known is not None:
        buttons.append(Button("Metrics", "alert_metrics", known))
    if record["status"] == "firing" and not silenced:
        what = f"*{record['title']}*" + (f" on {service}" if service else "")
        confirm = Confirm("Silence for 1 hour?", f"Alertmanager will not notify about {what} for an hour.")
        buttons.append(Button("Silence 1h", "alert_silence", gid, confirm=confirm))
    if known is not None and await _recent_switch(deps, known, now):
        buttons.append(Button("Roll back", "rollback", value=known, style="danger"))
    return AlertGroupCard(
        title=record["title"],
        status=record["status"],
        alerts=tuple(_line(a) for a in record["alerts"].values()),
        service=service,
        severity=record.get("severity"),
        labels=tuple((k, v) for k, v in record["common_labels"].items() if k not in shown),
        source=record.get("source") or None,
        silenced_by=silence.get("by") if silenced else None,
        silenced_until=until if silenced else None,
        truncated=record.get("truncated", 0),
        buttons=tuple(buttons),
        counts=_counts(record),
    )


def _counts(record: dict[str, Any]) -> tuple[int, int] | None:
    states = record.get("states")
    if not states:
        return None
    firing = sum(state[0] == "firing" for state in states.values())
    return firing, len(states) - firing


def _changes(old: dict[str, Any], new: dict[str, Any]) -> AlertChanges:
    before, after = _known(old), _known(new)
    fired = [
        a
        for fp, a in after.items()
        if a["status"] == "firing" and before.get(fp, {}).get("status") != "firing"
    ]
    resolved = [
        a
        for fp, a in after.items()
        if a["status"] == "resolved" and before.get(fp, {}).get("status") != "resolved"
    ]
    return AlertChanges(tuple(map(_line, fired)), tuple(map(_line, resolved)))


# --- notifications ---------------------------------------------------------------------------


async def handle_notification(deps: Deps, payload: Webhook) -> None:
    gid = group_id(payload.group_key)
    key = record_key(gid)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CLAIM_WAIT
    while True:
        now = datetime.now(UTC)
        record = await deps.store.get(key)
        if record is None:
            if await _post_new(deps, gid, payload, now):
                return
            continue  # another replica claimed it first: update its message instead
        if not record.get("ts"):
            if _own_claim(record) and await _post_new(deps, gid, payload, now, claimed=record):
                return  # our own earlier run (killed mid-post) claimed it: nobody else will post
            if loop.time() > deadline:
                log.error("alert group %s: another replica claimed it but never posted; dropped", gid)
                return
            await asyncio.sleep(0.1)
            continue
        new = {**record, **_group(payload, deps, record, now), "version": record["version"] + 1}
        if _same_state(record, new):
            log.info("alert group %s: repeated notification, nothing changed", gid)
            return
        won = await deps.store.compare_and_set(key, "version", record["version"], new, ttl=GROUP_TTL)
        if not won:
            continue  # someone else moved it on: merge into theirs
        ref = MessageRef(record["channel"], record["ts"])
        await deps.notifier.update(ref, await card(deps, gid, new))
        changes = _changes(record, new)
        if changes.fired or changes.resolved:
            await deps.notifier.post(ref.channel, changes, thread=ref)
        await _catch_up(deps, gid, ref, new["version"])
        return


def _own_claim(record: dict[str, Any]) -> bool:
    """A claim made by an earlier run of this very job (its worker was killed before recording the
    message): the claim is the job's ID, so a rerun knows it from another replica's."""
    job = current_job()
    return job is not None and record.get("claim") == f"job:{job}"


async def _post_new(
    deps: Deps, gid: str, payload: Webhook, now: datetime, claimed: dict[str, Any] | None = None
) -> bool:
    """Claim the group, post its message, record where it is. False if another replica has it.
    `claimed`: the record an earlier run of this job claimed; posted from (the outbox keeps a post
    that did reach Slack from going out twice)."""
    key = record_key(gid)
    job = current_job()
    if claimed is not None:
        record, claim = claimed, str(claimed["claim"])
        channel = record["channel"]
    else:
        claim = f"job:{job}" if job else secrets.token_hex(8)
        group = _group(payload, deps, None, now)
        channel = deps.catalog.alert_channel(group["severity"])
        record = {**group, "claim": claim, "channel": channel, "ts": None, "version": 0}
        if not await deps.store.create(key, record, ttl=CLAIM_TTL):
            return False
    try:
        ref = await deps.notifier.post(channel, await card(deps, gid, record))
    except BaseException:
        await deps.store.delete(key, if_field="claim", equals=claim)  # let the next notification retry
        raise
    posted = {**record, "claim": None, "channel": ref.channel, "ts": ref.ts, "version": 1}
    if not await deps.store.compare_and_set(key, "claim", claim, posted, ttl=GROUP_TTL):
        log.error(
            "alert group %s: claim lost while posting (slower than %ss); message %s", gid, CLAIM_TTL, ref
        )
    return True


async def _catch_up(deps: Deps, gid: str, ref: MessageRef, version: int) -> None:
    """If a newer version was written while we were updating Slack, our (older) update may have
    landed last: render the newest once more, so the message ends on the newest state."""
    latest = await deps.store.get(record_key(gid))
    if latest and latest.get("version", 0) > version:
        await deps.notifier.update(ref, await card(deps, gid, latest))


async def _change(deps: Deps, gid: str, change: dict[str, Any]) -> dict[str, Any]:
    """Merge `change` into the group's record (compare-and-set on `version`); the new record."""
    key = record_key(gid)
    while True:
        record = await deps.store.get(key)
        if record is None or not record.get("ts"):
            raise Refused("This alert group is no longer known to the bot (quiet for over a week?).")
        new = {**record, **change, "version": record["version"] + 1}
        if await deps.store.compare_and_set(key, "version", record["version"], new, ttl=GROUP_TTL):
            return new


# --- buttons ---------------------------------------------------------------------------------


@action("alert_silence", Role.OPERATOR)
async def silence_group(value: str, ctx: Context) -> Reply:
    """Silence 1h: a silence in Alertmanager on the group's common labels, audited, told in the thread."""
    am = ctx.deps.alertmanager
    if am is None:
        raise Refused("Silencing needs ALERTMANAGER_URL, which is not set on the bot. Nothing was silenced.")
    record = await ctx.store.get(record_key(value))
    if record is None or not record.get("ts"):
        raise Refused("This alert group is no longer known to the bot (quiet for over a week?).")
    matchers = record["common_labels"]
    if not matchers:
        raise Refused("The alerts of this group share no label to match on; silence them in Alertmanager.")
    now = datetime.now(UTC)
    until = now + SILENCE
    service = record.get("service")
    about = record["title"] + (f" ({service})" if service else "")
    try:
        silence_id = await am.create_silence(
            matchers,
            starts=now,
            ends=until,
            created_by=ctx.actor,
            comment=f"Silenced from Slack for 1h: {about}",
        )
    except AlertmanagerError as exc:
        raise Refused(f"{exc}. Nothing was silenced.") from None
    new = await _change(
        ctx.deps, value, {"silence": {"id": silence_id, "by": ctx.actor, "until": until.isoformat()}}
    )
    ref = MessageRef(record["channel"], record["ts"])
    await ctx.notifier.update(ref, await card(ctx.deps, value, new))
    detail = f"silence {silence_id} for 1h on {', '.join(f'{k}={v}' for k, v in matchers.items())}"
    await ctx.deps.audit(
        AuditEntry(
            ctx.actor,
            "alert.silence",
            "ok",
            service if service in ctx.catalog.services else None,
            clip(detail, 500),
            ctx.channel,
            await ctx.notifier.permalink(ref),
        )
    )
    text = f"🔕 <@{ctx.actor}> silenced *{about}* for 1 hour (silence `{silence_id}`)."
    await ctx.notifier.post(ref.channel, Notice(text, Tone.SUCCESS), thread=ref)
    return Reply(None, detail=detail, target=service, audited=True)


@action("alert_metrics", Role.VIEWER)
async def group_metrics(value: str, ctx: Context) -> Reply:
    """Metrics: the service's `/payflow metrics`, in the alert's thread; its status when the
    metrics command is not available."""
    from handlers.registry import COMMANDS
    from handlers.status import Status, show_status

    if value not in ctx.catalog.services:
        raise Refused(f"Unknown service `{value}`.")
    spec = COMMANDS.get("metrics")
    if spec is not None:
        reply = await spec.run(spec.parse([value], ctx.catalog), ctx)
    else:
        reply = await show_status(Status(value), ctx)
    if reply.view is not None:
        channel = ctx.message.channel if ctx.message else ctx.channel
        await ctx.notifier.post(channel, reply.view, thread=ctx.message)
    return Reply(None, detail=reply.detail, target=value, audited=reply.audited)
