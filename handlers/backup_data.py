"""`/payflow backup redis` and `/payflow backup config`: the guide's `redis-cli BGSAVE` and
`kubectl get configmaps -o yaml`, from chat.

Redis: BGSAVE, then INFO persistence until the save we asked for has ended (bounded): LASTSAVE
moved and `rdb_last_bgsave_status:ok`, or the status is `err` (said, with where to look). A save
already running is waited for, then ours is started: that one's snapshot predates the request.

Config: the namespace's ConfigMaps as one YAML file in the channel, without the metadata noise
(managedFields, resourceVersion, uid, …) and redacted (here and again by the Slack gateway).
**Secrets are never read**: the bot's Role has no `secrets` rule and no call asks for them; the
guide's `kubectl get secrets -o yaml` belongs in an encrypted store, not a chat channel.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from bot.base.redact import redact
from bot.base.roles import Role
from bot.domain.backups import age_text
from bot.domain.views import Facts, Notice, Reply, Report, Text, Tone
from bot.gateways.payflow_redis import PayflowRedis, PayflowRedisError, Persistence
from bot.gateways.slack import SlackError
from handlers.base import Context, Refused
from handlers.registry import command, takes_nothing

REDIS_WAIT_SECONDS = 60.0  # then "still saving", never "failed"
REDIS_POLL_SECONDS = 0.2
MAX_CONFIG_BYTES = 5 * 1024 * 1024  # more is refused, never cut
NOISE = ("managedFields", "resourceVersion", "uid", "generation", "selfLink", "creationTimestamp")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"  # a second copy of the data
SECRETS_NOTE = (
    "Secrets are not backed up from chat: the bot cannot read them (its Role has no `secrets` rule) "
    "and a channel is no place for them. Back them up with your secret manager, or "
    "`kubectl get secrets -n {ns} -o yaml` into an encrypted store."
)

BINARY_NOTE = (
    "The binaryData of {n} ConfigMap(s) is not in the file: it is base64, so the redaction cannot "
    "see a credential or card number inside it. `kubectl get configmaps -n {ns} -o yaml` has it."
)


@dataclass(frozen=True)
class DataBackup:
    kind: str  # "redis" | "config"


# --- redis ---------------------------------------------------------------------------------------


def _ended(before: Persistence, now: Persistence) -> bool:
    """Our save has ended: none in progress, and a save was counted (rdb_saves, Redis 7+) or
    LASTSAVE moved (older Redis; one-second resolution, so the counter is preferred)."""
    if now.in_progress:
        return False
    if before.saves is not None and now.saves is not None:
        return now.saves > before.saves
    return now.last_save > before.last_save or now.last_status == "err"


async def _start_save(redis: PayflowRedis, deadline: float) -> tuple[Persistence, bool]:
    """BGSAVE once no other save runs; the state just before ours, and whether we waited."""
    loop = asyncio.get_running_loop()
    waited = False
    while True:
        before = await redis.persistence()
        if not before.in_progress and await redis.bgsave():
            return before, waited
        waited = True
        if loop.time() >= deadline:
            raise TimeoutError
        await asyncio.sleep(REDIS_POLL_SECONDS)


@command(
    "backup redis",
    summary="BGSAVE on PayFlow's Redis, and wait until the snapshot is written (LASTSAVE moves).",
    role=Role.OPERATOR,
    examples=("/payflow backup redis",),
    parse=takes_nothing("backup redis", DataBackup("redis")),
    working=lambda cmd: "Asking PayFlow's Redis for a snapshot (BGSAVE)…",
)
async def backup_redis(cmd: DataBackup, ctx: Context) -> Reply:
    redis = ctx.deps.payflow_redis
    if redis is None:
        setting = ctx.catalog.data.redis.url_setting
        raise Refused(f"PayFlow's Redis is not configured: set `{setting}`. Nothing was saved.")
    loop = asyncio.get_running_loop()
    began = loop.time()
    deadline = began + REDIS_WAIT_SECONDS
    try:
        try:
            before, waited = await _start_save(redis, deadline)
        except TimeoutError:
            text = (
                f"A background save already running on {redis.describe()} has not ended after "
                f"{REDIS_WAIT_SECONDS:g} s, so none was started. Try again when it has."
            )
            return Reply(Notice(text, Tone.WARNING), detail="another save still running", outcome="refused")
        while True:
            await asyncio.sleep(REDIS_POLL_SECONDS)
            now = await redis.persistence()
            if _ended(before, now):
                break
            if loop.time() >= deadline:
                text = (
                    f"{redis.describe()} is still writing the snapshot after {REDIS_WAIT_SECONDS:g} s; "
                    "it has not failed. `/payflow backups` shows LASTSAVE once it is written."
                )
                return Reply(Notice(text, Tone.WARNING), public=True, detail="BGSAVE still running")
    except PayflowRedisError as exc:
        return Reply(Notice(f"{exc}. Nothing was saved.", Tone.ERROR), detail=str(exc), outcome="failed")
    took = loop.time() - began
    waited_note = " (after waiting for a save that was already running)" if waited else ""
    if now.last_status != "ok":
        failed_facts = (
            ("rdb_last_bgsave_status", f"`{now.last_status or '?'}`"),
            ("LASTSAVE", _stamp(now.last_save) + " (unchanged)"),
        )
        why = Text(
            "Redis could not write the RDB file: its log says why (disk full, `dir` not writable, "
            "fork refused for memory). The last good snapshot is the LASTSAVE above."
        )
        report = Report(f"Redis snapshot failed{waited_note}", (Facts(failed_facts), why), tone=Tone.ERROR)
        return Reply(
            report, public=True, detail="BGSAVE failed: rdb_last_bgsave_status:err", outcome="failed"
        )
    facts = (
        ("LASTSAVE", _stamp(now.last_save)),
        (
            "Took",
            f"{took:.1f} s" + (f" (Redis: {now.last_seconds} s)" if now.last_seconds is not None else ""),
        ),
        ("Where", redis.describe()),
    )
    report = Report(f"Redis snapshot written{waited_note}", (Facts(facts),), tone=Tone.SUCCESS)
    return Reply(report, public=True, detail=f"BGSAVE ok, LASTSAVE {_stamp(now.last_save)}")


def _stamp(unix: int) -> str:
    if not unix:
        return "never"
    at = datetime.fromtimestamp(unix, UTC)
    ago = age_text(max((datetime.now(UTC) - at).total_seconds(), 0))
    return f"{at:%Y-%m-%d %H:%M:%S} UTC ({ago} ago)"


# --- config --------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Multi-line values as literal blocks (the file reads like the ConfigMap it came from, and
    the redaction sees each line as written); one-line strings double-quoted, so a value the
    redaction replaces stays a string (a bare `[REDACTED]` would read back as a YAML list)."""


def _literal(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _literal)


def clean(config_map: dict[str, Any]) -> dict[str, Any]:
    """What `kubectl apply` needs back, without what the server adds."""
    md = {k: v for k, v in (config_map.get("metadata") or {}).items() if k not in NOISE}
    annotations = {k: v for k, v in (md.get("annotations") or {}).items() if k != LAST_APPLIED}
    if annotations:
        md["annotations"] = annotations
    else:
        md.pop("annotations", None)
    if not md.get("labels"):
        md.pop("labels", None)
    out: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md}
    for field in ("data", "immutable"):  # binaryData is base64: redaction cannot see into it
        if field in config_map:
            out[field] = config_map[field]
    return out


@command(
    "backup config",
    summary="The namespace's ConfigMaps as one redacted YAML file in this channel (never Secrets).",
    role=Role.OPERATOR,
    examples=("/payflow backup config",),
    parse=takes_nothing("backup config", DataBackup("config")),
)
async def backup_config(cmd: DataBackup, ctx: Context) -> Reply:
    ns = ctx.kube.namespace
    maps = sorted(await ctx.kube.config_maps(), key=lambda m: str(m["metadata"]["name"]))
    doc = {"apiVersion": "v1", "kind": "List", "items": [clean(m) for m in maps]}
    raw = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)
    text = "\n".join(redact(line) for line in raw.split("\n"))
    redacted = sum(1 for a, b in zip(raw.split("\n"), text.split("\n"), strict=True) if a != b)
    size = len(text.encode())
    binary = [f"`{m['metadata']['name']}`" for m in maps if m.get("binaryData")]
    if size > MAX_CONFIG_BYTES:
        raise Refused(
            f"The {len(maps)} ConfigMaps of `{ns}` make {size // 1024} KiB, more than the "
            f"{MAX_CONFIG_BYTES // 1024 // 1024} MiB a chat backup carries; nothing was posted. "
            f"Use `kubectl get configmaps -n {ns} -o yaml`."
        )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    filename = f"configmaps-{ns}-{stamp}.yaml"
    try:
        await ctx.notifier.upload(
            ctx.channel,
            filename,
            text,
            title=f"ConfigMaps of {ns}",
            comment=f"🗂️ <@{ctx.actor}> backed up the {len(maps)} ConfigMaps of `{ns}`.",
        )
    except SlackError as exc:
        raise Refused(
            f"Could not share the file here (Slack: {exc.code}). Invite the bot to this channel."
        ) from None
    facts = Facts(
        (
            ("ConfigMaps", ", ".join(f"`{m['metadata']['name']}`" for m in maps[:20]) or "none")
            if len(maps) <= 20
            else ("ConfigMaps", f"{len(maps)}"),
            ("File", f"`{filename}` ({max(size // 1024, 1)} KiB)"),
            ("Redacted", f"{redacted} line(s) that looked like credentials or card data"),
            *(
                [
                    (
                        "Left out",
                        f"the binaryData of {', '.join(binary[:20])}" + (" …" if len(binary) > 20 else ""),
                    )
                ]
                if binary
                else []
            ),
        )
    )
    parts: list[Facts | Text] = [facts, Text(SECRETS_NOTE.format(ns=ns), Tone.INFO)]
    if binary:
        parts.append(Text(BINARY_NOTE.format(n=len(binary), ns=ns), Tone.WARNING))
    report = Report("Config backup", tuple(parts), tone=Tone.WARNING if binary else Tone.SUCCESS)
    return Reply(report, public=True, detail=f"{len(maps)} ConfigMaps, {redacted} line(s) redacted")
