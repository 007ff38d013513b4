"""People and channels of the console and `make run`: enough roles to try every command,
including a second person to approve a switch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bot.config.catalog import Catalog, Channels, Members, Roles, Smoke
from sandbox.rabbitmq import VHOST as RABBIT_VHOST


@dataclass(frozen=True)
class DemoUser:
    id: str
    name: str
    role: str


USERS = (
    DemoUser("U0ALICE", "alice", "operator"),
    DemoUser("U0BOB", "bob", "approver"),
    DemoUser("U0CAROL", "carol", "admin"),
    DemoUser("U0DAVE", "dave", "viewer"),
)
OPS_CHANNEL_ID = "C0PAYFLOWOPS"
OPS_CHANNEL_NAME = "payflow-ops"
APPROVERS_GROUP = "S0APPROVERS"


def user(name_or_id: str) -> DemoUser | None:
    key = name_or_id.lstrip("@")
    return next((u for u in USERS if key in (u.id, u.name)), None)


def demo_catalog(base: Catalog) -> Catalog:
    """The catalog with demo roles; bob is an approver through a user group, as in most workspaces."""
    roles = Roles(
        viewer=Members(users=["*"]),
        operator=Members(users=["U0ALICE"]),
        approver=Members(groups=[APPROVERS_GROUP]),
        admin=Members(users=["U0CAROL"]),
    )
    channels = Channels(
        commands=[OPS_CHANNEL_ID],
        allow_dms=False,
        approvals="#payflow-approvals",
        digests=f"#{OPS_CHANNEL_NAME}",
        alerts="#payflow-alerts",
        audit="#payflow-audit",
    )
    # the sandbox's Services are reached through the API server's service proxy, and a demo
    # should not bake for ten minutes
    env = base.env.model_copy(
        update={
            "smoke": Smoke(via="apiserver", interval_seconds=0.3),
            "bake_seconds": 60,
            "bake_interval_seconds": 15,
        }
    )
    environments = {**base.environments, base.environment: env}
    # the demo's RabbitMQ node (sandbox/demo_data.py) keeps PayFlow's queues in their own vhost
    rabbitmq = base.data.rabbitmq.model_copy(update={"vhost": RABBIT_VHOST})
    data = base.data.model_copy(update={"rabbitmq": rabbitmq})
    return base.model_copy(
        update={"roles": roles, "channels": channels, "environments": environments, "data": data}
    )


USERGROUPS = {APPROVERS_GROUP: ["U0BOB"]}


DEFAULT_CATALOG = Path(__file__).resolve().parents[1] / "bot" / "config" / "catalog.default.yaml"


def demo_catalog_file(
    path: Path, *, operators: Iterable[str] = ("U0ALICE",), approvers: Iterable[str] = ()
) -> Path:
    """The built-in catalog written as an operator would for a demo `serve` (PAYFLOW_CONFIG):
    commands in the demo channel, the given people listed by Slack ID. A default that no longer
    reads as expected fails here, not as a silently unchanged catalog."""
    text = DEFAULT_CATALOG.read_text()
    edits = {'commands: ["#payflow-ops"]': f'commands: ["{OPS_CHANNEL_ID}"]'}
    for role, ids in (("operator", list(operators)), ("approver", list(approvers))):
        if ids:
            edits[f"{role}: {{users: [], groups: []}}"] = f"{role}: {{users: [{', '.join(ids)}], groups: []}}"
    for old, new in edits.items():
        if old not in text:
            raise ValueError(f"the built-in catalog no longer has {old!r}")
        text = text.replace(old, new)
    path.write_text(text)
    return path
