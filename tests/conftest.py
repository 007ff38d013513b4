"""Real parts only: a private redis-server, the sandbox cluster over HTTP through the
`kubernetes` client, the bot served by uvicorn, and a local stand-in for the Slack Web API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from bot.config.catalog import Catalog, load_catalog
from bot.config.settings import Settings
from bot.shell.runtime import build_runtime
from sandbox import demo
from sandbox.cluster import Cluster
from sandbox.k8s_api import SandboxServer
from sandbox.local import wait_until
from sandbox.seed import seed
from sandbox.slack_api import SlackApiStub
from sandbox.slack_requests import SlackRequests
from tests.support.bot_server import BotServer
from tests.support.chat import Chat
from tests.support.redis_server import RedisServer, redis_server_fixture
from tests.support.served import Served

BOT_TOKEN = "xoxb-test-token"
SIGNING_SECRET = "test-signing-secret-0123456789abcdef"

# postgres_server, rabbitmq_node, blacklist_redis: session-wide private data stores.
pytest_plugins = ["tests.support.datastores"]

redis_server = redis_server_fixture()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def catalog() -> Catalog:
    return demo.demo_catalog(load_catalog())


@pytest.fixture
def cluster(catalog: Catalog) -> Cluster:
    c = seed(Cluster(), catalog)
    c.ready_delay = 0.05
    return c


@pytest.fixture
def sandbox(cluster: Cluster, tmp_path: Path) -> Iterator[SandboxServer]:
    server = SandboxServer(cluster).start()
    server.write_kubeconfig(tmp_path / "kubeconfig")
    yield server
    server.stop()


@pytest.fixture
def kubeconfig(sandbox: SandboxServer, tmp_path: Path) -> Path:
    return tmp_path / "kubeconfig"


class Cluster8s:
    """The test's own view of the sandbox, through the real kubernetes client."""

    def __init__(self, kubeconfig: Path, namespace: str):
        api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
        self.apps = k8s.AppsV1Api(api)
        self.net = k8s.NetworkingV1Api(api)
        self.core = k8s.CoreV1Api(api)
        self.ns = namespace

    def deployment(self, name: str) -> Any:
        return self.apps.read_namespaced_deployment(name, self.ns, _request_timeout=5)

    def replicas(self, name: str) -> int:
        return self.deployment(name).spec.replicas

    def fingerprint(self) -> dict[str, Any]:
        """What a command could change: every deployment's spec and the traffic objects."""
        deps = self.apps.list_namespaced_deployment(self.ns, _request_timeout=5).items
        ings = self.net.list_namespaced_ingress(self.ns, _request_timeout=5).items
        svcs = self.core.list_namespaced_service(self.ns, _request_timeout=5).items
        return {
            **{
                f"deploy/{d.metadata.name}": (
                    d.metadata.generation,
                    d.spec.replicas,
                    d.spec.template.spec.containers[0].image,
                )
                for d in deps
            },
            **{f"ingress/{i.metadata.name}": i.metadata.resource_version for i in ings},
            **{f"svc/{s.metadata.name}": s.metadata.resource_version for s in svcs},
        }

    def settled(self) -> bool:
        deps = self.apps.list_namespaced_deployment(self.ns, _request_timeout=5).items
        return all((d.status.ready_replicas or 0) == d.spec.replicas for d in deps)

    def wait_settled(self, timeout: float = 10) -> None:
        wait_until(self.settled, timeout, "every sandbox deployment to be ready")


@pytest.fixture
def k8s_view(kubeconfig: Path, catalog: Catalog) -> Cluster8s:
    view = Cluster8s(kubeconfig, catalog.namespace)
    view.wait_settled()
    return view


@pytest.fixture
def slack() -> Iterator[SlackApiStub]:
    with SlackApiStub(bot_token=BOT_TOKEN, usergroups=demo.USERGROUPS) as stub:
        yield stub


@pytest.fixture
def settings(slack: SlackApiStub, redis_url: str, kubeconfig: Path) -> Settings:
    return Settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.api_url,
        redis_url=redis_url,
        kubeconfig=str(kubeconfig),
    )


StartServe = Callable[..., Served]


@pytest.fixture
def start_serve() -> Iterator[StartServe]:
    """`start_serve(settings, *args, wait=True, wrap=())`: a real `payflow-bot serve` process
    (tests.support.served.Served), up on /healthz unless `wait=False`; each one started is stopped
    at the end, gracefully, so no worker outlives the test and reads the next one's jobs."""
    started: list[Served] = []

    def start(settings: dict[str, str], *args: str, wait: bool = True, wrap: tuple[str, ...] = ()) -> Served:
        served = Served(settings, *args, wrap=wrap)
        started.append(served)
        return served.wait_up() if wait else served

    yield start
    for served in started:
        served.stop()


@pytest.fixture
def bot(settings: Settings, catalog: Catalog, k8s_view: Cluster8s) -> Iterator[BotServer]:
    server = BotServer(build_runtime(settings, catalog)).start()
    yield server
    server.stop()


@pytest.fixture
def chat(bot: BotServer, slack: SlackApiStub) -> Chat:
    return Chat(bot, slack, SlackRequests(SIGNING_SECRET, response_url=slack.response_url("cmd")))
