"""`/payflow mq`: the guide's "Message Queue Health" (`rabbitmqctl status` in the broker's pod)
from chat, for anyone who may look: is the node up, and which queues are backing up or have no
one consuming them. Read from the management API with a monitoring user; no pod exec."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bot.base.roles import Role
from bot.config.operations import RabbitMQ as RabbitConf
from bot.domain.views import Facts, Notice, Reply, Report, Table, Text, Tone
from bot.gateways.rabbitmq import Overview, Queues, QueueStats, RabbitError
from handlers.base import Context
from handlers.registry import command, takes_nothing

COLUMNS = ("queue", "ready", "unacked", "consumers", "publish/s", "deliver/s", "state")


@dataclass(frozen=True)
class Mq:
    pass


def _rate(value: float) -> str:
    return f"{value:.1f}"


def _problems(q: QueueStats, conf: RabbitConf) -> list[str]:
    found = []
    if q.consumers == 0:
        found.append("no consumer")
    if q.ready > conf.backlog_warning:
        found.append(f"backlog over {conf.backlog_warning:,}")
    return found


def queue_table(queues: Queues, conf: RabbitConf) -> Table:
    """Problems first (missing catalog queues, then the largest backlogs), then the rest by name."""
    found = {q.name: q for q in queues.queues}
    missing = [name for name in dict.fromkeys(conf.queues) if name not in found]  # ≤ 100: all on the page
    rows: list[tuple[tuple[str, ...], bool, tuple[int, int, str]]] = []
    for name in missing:
        rows.append(((name, "—", "—", "—", "—", "—", "missing"), True, (0, 0, name)))
    for q in queues.queues:
        problems = _problems(q, conf)
        cells = (
            q.name,
            f"{q.ready:,}",
            f"{q.unacked:,}",
            str(q.consumers),
            _rate(q.publish_rate),
            _rate(q.deliver_rate),
            ", ".join(problems) or "ok",
        )
        rows.append((cells, bool(problems), (1 if problems else 2, -q.ready, q.name)))
    rows.sort(key=lambda r: r[2])
    shown = "the named queues" if conf.queues else "queues"
    note = ""
    if queues.matched > len(queues.queues):
        note = f"the {len(queues.queues):,} largest backlogs of {queues.matched:,} {shown}"
    return Table(
        COLUMNS,
        tuple(r[0] for r in rows),
        title=f"Queues of vhost {conf.vhost}",
        empty=f"no queues in vhost {conf.vhost}",
        attention=tuple(r[1] for r in rows),
        noun="queues",
        note=note,
    )


def node_facts(overview: Overview) -> tuple[Facts, list[str]]:
    items, problems = [], []
    for node in overview.nodes:
        state = "running" if node.running else "DOWN"
        alarms = [a for a, on in (("memory alarm", node.memory_alarm), ("disk alarm", node.disk_alarm)) if on]
        if not node.running:
            problems.append(f"node {node.name} is down")
        problems += [f"{node.name}: {a} (publishers are blocked)" for a in alarms]
        items.append((f"Node {node.name}", ", ".join([state, *alarms])))
    if not overview.nodes:
        problems.append("the broker lists no node")
    items.insert(0, ("RabbitMQ", f"{overview.version}, cluster {overview.cluster}"))
    return Facts(tuple(items)), problems


@command(
    "mq",
    summary="RabbitMQ: is the node up, queue depths, consumers and rates (problems first).",
    role=Role.VIEWER,
    examples=("/payflow mq",),
    parse=takes_nothing("mq", Mq()),
)
async def mq(cmd: Mq, ctx: Context) -> Reply:
    conf = ctx.catalog.data.rabbitmq
    rabbit = ctx.deps.rabbitmq
    if rabbit is None:
        text = (
            f"RabbitMQ is not configured: set `{conf.url_setting}` to the management API's URL with a "
            "monitoring-tag user (`http://user:password@rabbitmq:15672`; README: RabbitMQ)."
        )
        return Reply(Notice(text, Tone.WARNING), outcome="failed", detail=f"{conf.url_setting} not set")
    try:
        overview, queues = await asyncio.gather(rabbit.overview(), rabbit.queues(conf.queues))
    except RabbitError as exc:
        return Reply(Notice(f"{exc}.", Tone.ERROR), outcome="failed", detail=str(exc))
    facts, problems = node_facts(overview)
    table = queue_table(queues, conf)
    flagged = sum(table.attention)
    parts: list[Facts | Table | Text] = [facts]
    if problems:
        parts.append(Text("; ".join(problems), Tone.ERROR))
    parts.append(table)
    summary = f"{flagged} of {len(table.rows)} queues need attention" if flagged else "every queue is ok"
    tone = Tone.ERROR if problems else Tone.WARNING if flagged else Tone.SUCCESS
    report = Report(f"RabbitMQ: {summary}", tuple(parts), tone=tone, filename="rabbitmq-queues.txt")
    return Reply(report, public=True, detail=summary)
