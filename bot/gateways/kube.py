"""Kubernetes gateway: the only module that talks to the API server.

The official client is blocking, so every call runs in a small thread pool with ONE deadline:
urllib3's total timeout on the request, retries switched off (the client's default urllib3
retries turned one 5 s timeout into 20 s against a server that accepts and never answers), and
the same deadline around the wait for a pool thread. Responses are read as raw JSON
(`_preload_content=False`) and turned into our own small types: the generated models cost far
more CPU than we need, and that CPU would be taken from the event loop that acks Slack.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util.retry import Retry

from bot.gateways.kube_http import ApiServerHttp, supports
from bot.gateways.kube_objects import (
    Conflict,
    DeploymentState,
    IngressState,
    KubeError,
    NotFound,
    NotStarted,
    PodState,
    Route,
    ScaleState,
    ServiceState,
    Snapshot,
    Unreachable,
    _deployment,
    _ingress,
    _ingress_route,
    _pod,
    _service,
)

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"

_WRITES = ("patch_", "create_", "replace_", "delete_")
# The API server's Timeout (504) and ServerTimeout (500): a write answered so may still be applied.
SERVER_TIMEOUTS = (500, 504)
# Service-proxy GETs in flight at once (connections kept alive to the API server): probes
# of `/payflow health` wait for one of these, not for the client's threads.
PROXY_LIMIT = 16


@dataclass
class NamespaceRead:
    """One read of the namespace in flight: the ingresses first (small, and all that an
    ingress-routed service's live color needs), then the Services, then the whole snapshot."""

    ingresses: asyncio.Future[dict[str, IngressState]]
    services: asyncio.Future[dict[str, ServiceState]]
    snapshot: asyncio.Future[Snapshot]


def no_retries(configuration: k8s.Configuration) -> k8s.Configuration:
    """One attempt per call: a hung API server costs one deadline, and a write is never re-sent."""
    configuration.retries = Retry(total=0, connect=0, read=0, redirect=0, status=0, other=0)
    return configuration


def _unreachable(exc: BaseException, timeout: float, write: bool) -> Unreachable:
    reason = exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc
    if isinstance(reason, NewConnectionError):
        return Unreachable("Kubernetes API not reachable (connection refused)")
    if isinstance(reason, Urllib3Timeout | TimeoutError):
        if write:
            return Unreachable(
                f"Kubernetes API did not answer within {timeout:g} s; the change may or may not have "
                "been applied — check before trying again",
                uncertain=True,
            )
        return Unreachable(f"Kubernetes API did not answer within {timeout:g} s")
    return Unreachable(f"Kubernetes API not reachable: {type(reason).__name__}", uncertain=write)


def _at(doc: Any, pointer: str) -> Any:
    """The value at a JSON pointer (RFC 6901), or None when there is none."""
    for token in pointer.lstrip("/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(doc, dict):
            doc = doc.get(token)
        elif isinstance(doc, list) and token.isdigit() and int(token) < len(doc):
            doc = doc[int(token)]
        else:
            return None
    return doc


def _reason(exc: ApiException) -> str:
    try:
        return json.loads(exc.body or "{}").get("message") or exc.reason or str(exc.status)
    except (ValueError, AttributeError):
        return exc.reason or str(exc.status)


class Kube:
    def __init__(
        self,
        api_client: k8s.ApiClient,
        namespace: str,
        *,
        timeout: float = 5.0,
        workers: int = 8,
        proxy_limit: int = PROXY_LIMIT,
    ):
        self.namespace = namespace
        self._api = api_client
        configuration = api_client.configuration
        self._http = ApiServerHttp(configuration, proxy_limit) if supports(configuration) else None
        self._apis: dict[str, Any] = {}  # built on first use: see _lazy
        self._timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")
        self._inflight: NamespaceRead | None = None
        self._reads: set[asyncio.Task[None]] = set()  # reads in flight: kept from the GC

    @classmethod
    def connect(
        cls,
        namespace: str,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        timeout: float = 5.0,
        workers: int = 8,
        proxy_limit: int = PROXY_LIMIT,
    ) -> Kube:
        """From a kubeconfig file when given, else the in-cluster service account; no retries."""
        configuration = no_retries(k8s.Configuration())
        if kubeconfig:
            api = k8s_config.new_client_from_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
        else:
            k8s_config.load_incluster_config(client_configuration=configuration)
            api = k8s.ApiClient(configuration)
        return cls(api, namespace, timeout=timeout, workers=workers, proxy_limit=proxy_limit)

    def _lazy(self, name: str) -> Any:
        """The generated API class `name`, built on first use: importing AppsV1Api and CoreV1Api
        imports hundreds of model modules (~0.6 s), which the web process (it only pings) never
        needs and the worker warms up after it is ready (`warm`)."""
        api = self._apis.get(name)
        if api is None:
            api = self._apis[name] = getattr(k8s, name)(self._api)
        return api

    @property
    def _apps(self) -> Any:
        return self._lazy("AppsV1Api")

    @property
    def _core(self) -> Any:
        return self._lazy("CoreV1Api")

    @property
    def _net(self) -> Any:
        return self._lazy("NetworkingV1Api")

    @property
    def _batch(self) -> Any:
        return self._lazy("BatchV1Api")

    @property
    def _version(self) -> Any:
        return self._lazy("VersionApi")

    def warm(self) -> None:
        """Build the API classes in a pool thread, off the event loop, once the process is up."""
        for name in ("AppsV1Api", "CoreV1Api", "NetworkingV1Api", "BatchV1Api"):
            self._pool.submit(self._lazy, name)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api.close()

    async def aclose(self) -> None:
        """`close`, and the service proxy's connections of the running loop."""
        if self._http is not None:
            await self._http.close()
        self.close()

    async def _call(
        self,
        fn: Callable[..., Any],
        *args: object,
        raw: bool = False,
        timeout: float | None = None,
        on_start: Callable[[float], None] | None = None,
        start_by: float | None = None,
        **kwargs: object,
    ) -> Any:
        """Run one client call in the pool; returns parsed JSON, or the bytes when `raw`.

        One deadline covers the wait for a pool thread and the request (urllib3's total timeout);
        the extra second lets urllib3's own timeout, which knows whether the request was sent,
        usually be the one that fires. With `on_start` (called on the loop with the loop's time
        when a pool thread takes the call up), the deadline starts then instead: a probe's
        deadline must not count its wait behind other calls. That wait is bounded by `start_by`
        (the loop's time): a call not taken up by then is never sent (NotStarted)."""
        write = getattr(fn, "__name__", "").startswith(_WRITES)
        timeout = self._timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()

        def begun(tell: Callable[[float], None]) -> None:
            if not started.done():
                started.set_result(None)
                tell(loop.time())

        def call() -> Any:
            if on_start is not None:
                loop.call_soon_threadsafe(begun, on_start)
            try:
                resp = fn(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
            except ApiException as exc:
                if exc.status == 404:
                    raise NotFound(_reason(exc)) from None
                if exc.status in (409, 422):
                    raise Conflict(_reason(exc)) from None
                if exc.status in (401, 403):
                    raise KubeError(f"Kubernetes refused the bot's credentials ({exc.status})") from None
                if write and exc.status in SERVER_TIMEOUTS:  # "may still be processing the request"
                    raise Unreachable(
                        f"Kubernetes answered {exc.status} ({_reason(exc)}); the change may or may not "
                        "have been applied",
                        uncertain=True,
                    ) from None
                raise KubeError(f"Kubernetes answered {exc.status}: {_reason(exc)}") from None
            except Exception as exc:  # urllib3 connection and timeout errors
                raise _unreachable(exc, timeout, write) from None
            try:
                data = resp.data  # the body is read here, still under urllib3's total timeout
            except Exception as exc:
                raise _unreachable(exc, timeout, write) from None
            if raw:
                return data
            return json.loads(data) if data else None

        future = loop.run_in_executor(self._pool, call)
        try:
            if on_start is not None:  # the queue wait, bounded by start_by, not by this deadline
                wait = None if start_by is None else max(0.0, start_by - loop.time())
                await asyncio.wait({started, future}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if not started.done() and not future.done() and future.cancel():
                    raise NotStarted("not sent: the Kubernetes gateway's threads stayed busy")
            return await asyncio.wait_for(future, timeout + 1)
        except TimeoutError:
            raise _unreachable(TimeoutError(), timeout, write) from None
        except asyncio.CancelledError:
            future.cancel()  # still queued: it never runs
            raise

    async def ping(self) -> str:
        info = await self._call(self._version.get_code)
        return str(info.get("gitVersion", "?"))

    async def deployments(self) -> dict[str, DeploymentState]:
        data = await self._call(self._apps.list_namespaced_deployment, self.namespace)
        return {d.name: d for d in map(_deployment, data.get("items", []))}

    async def deployment(self, name: str) -> DeploymentState:
        return _deployment(await self._call(self._apps.read_namespaced_deployment, name, self.namespace))

    async def pods(self, label_selector: str | None = None) -> list[PodState]:
        selector = label_selector or None  # None: the client sends no labelSelector
        data = await self._call(self._core.list_namespaced_pod, self.namespace, label_selector=selector)
        return [_pod(p) for p in data.get("items", [])]

    async def pod_log(
        self,
        pod: str,
        *,
        container: str | None,
        tail_lines: int,
        since_seconds: int | None,
        timestamps: bool = False,
    ) -> str:
        """The newest `tail_lines` lines of one container (`kubectl logs --tail --since`), as text.
        `timestamps` prefixes each line with the kubelet's RFC 3339 time, to merge pods in order."""
        kwargs: dict[str, Any] = {"tail_lines": tail_lines, "timestamps": timestamps}
        if container:
            kwargs["container"] = container
        if since_seconds is not None:
            kwargs["since_seconds"] = since_seconds
        data = await self._call(self._core.read_namespaced_pod_log, pod, self.namespace, raw=True, **kwargs)
        return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data or "")

    async def ingresses(self) -> dict[str, IngressState]:
        data = await self._call(self._net.list_namespaced_ingress, self.namespace)
        return {i.name: i for i in map(_ingress, data.get("items", []))}

    async def services(self) -> dict[str, ServiceState]:
        data = await self._call(self._core.list_namespaced_service, self.namespace)
        return {s.name: s for s in map(_service, data.get("items", []))}

    # Raw JSON for the kinds only one command reads: the command's domain module interprets them.

    async def network_policies(self) -> list[dict[str, Any]]:
        data = await self._call(self._net.list_namespaced_network_policy, self.namespace)
        return list(data.get("items", []))

    async def config_maps(self) -> list[dict[str, Any]]:
        """Never Secrets: the bot's Role cannot read them, and no call here asks."""
        data = await self._call(self._core.list_namespaced_config_map, self.namespace)
        return list(data.get("items", []))

    async def cron_job(self, name: str) -> dict[str, Any]:
        return dict(await self._call(self._batch.read_namespaced_cron_job, name, self.namespace))

    async def jobs(self) -> list[dict[str, Any]]:
        data = await self._call(self._batch.list_namespaced_job, self.namespace)
        return list(data.get("items", []))

    async def job(self, name: str) -> dict[str, Any]:
        return dict(await self._call(self._batch.read_namespaced_job, name, self.namespace))

    async def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        """One POST; a timeout is `Unreachable(uncertain=True)`: the Job may exist."""
        return dict(await self._call(self._batch.create_namespaced_job, self.namespace, body))

    async def job_pods(self, job: str) -> list[dict[str, Any]]:
        """The pods the job controller made for `job` (its `job-name` label), raw."""
        data = await self._call(
            self._core.list_namespaced_pod, self.namespace, label_selector=f"job-name={job}"
        )
        return list(data.get("items", []))

    async def snapshot(self) -> Snapshot:
        """One parallel read of the namespace; concurrent callers share a read already in flight."""
        return await asyncio.shield(self.read_namespace().snapshot)

    def read_namespace(self) -> NamespaceRead:
        """Start one read of the namespace (or join the one in flight). The ingresses are read
        alone first: they are small, and every ingress-routed service's live color is known from
        them, so `/payflow health`'s probes start before the big lists (deployments and pods:
        megabytes at a thousand services) are sent, parsed and converted; Services follow, then
        the whole `snapshot`. The read runs as its own task: a caller that gives up does not fail
        the others."""
        if self._inflight is not None:
            return self._inflight
        loop = asyncio.get_running_loop()
        read = NamespaceRead(loop.create_future(), loop.create_future(), loop.create_future())
        self._inflight = read
        task = loop.create_task(self._read_namespace(read), name="kube-snapshot")
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)
        return read

    async def _read_namespace(self, read: NamespaceRead) -> None:
        rest: asyncio.Future[Any] | None = None
        try:
            ingresses = await self.ingresses()
            read.ingresses.set_result(ingresses)
            services = asyncio.ensure_future(self.services())
            workloads = asyncio.gather(self.deployments(), self.pods())
            rest = asyncio.gather(services, workloads)
            read.services.set_result(await services)
            deployments, pods = await workloads
            read.snapshot.set_result(Snapshot(deployments, pods, ingresses, read.services.result()))
        except BaseException as exc:
            if rest is not None:
                rest.cancel()
                # retrieved whether it was still running or had already failed on its own
                await asyncio.gather(rest, return_exceptions=True)
            for future in (read.ingresses, read.services, read.snapshot):
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
                    future.exception()  # mark retrieved: whoever awaits it re-raises it
            if not isinstance(exc, Exception):
                raise
        finally:
            self._inflight = None

    async def read_scale(self, deployment: str) -> ScaleState:
        data = await self._call(self._apps.read_namespaced_deployment_scale, deployment, self.namespace)
        return ScaleState(
            int(data.get("spec", {}).get("replicas", 0) or 0), data["metadata"]["resourceVersion"]
        )

    async def write_scale(self, deployment: str, replicas: int, expected: int) -> ScaleState:
        """Set replicas only if they are still `expected` (else Conflict).

        A JSON-patch `test` of spec.replicas, not the resourceVersion: status updates bump the
        resourceVersion all through a rollout, and must not make a scale fail.
        """
        patch = [
            {"op": "test", "path": "/spec/replicas", "value": expected},
            {"op": "replace", "path": "/spec/replicas", "value": replicas},
        ]
        data = await self._call(
            self._apps.patch_namespaced_deployment_scale,
            deployment,
            self.namespace,
            patch,
            _content_type=JSON_PATCH,
        )
        return ScaleState(int(data["spec"]["replicas"]), data["metadata"]["resourceVersion"])

    async def _patch_deployment(self, name: str, patch: dict[str, Any], content_type: str) -> DeploymentState:
        data = await self._call(
            self._apps.patch_namespaced_deployment, name, self.namespace, patch, _content_type=content_type
        )
        return _deployment(data)

    async def set_image(self, deployment: str, container: str, image: str, replicas: int) -> DeploymentState:
        """The guide's `kubectl set image` + `kubectl scale` on the idle color, in one patch."""
        patch = {
            "spec": {
                "replicas": replicas,
                "template": {"spec": {"containers": [{"name": container, "image": image}]}},
            }
        }
        return await self._patch_deployment(deployment, patch, STRATEGIC_PATCH)

    async def scale_to(self, deployment: str, replicas: int) -> DeploymentState:
        patch = {"spec": {"replicas": replicas}}
        return await self._patch_deployment(deployment, patch, MERGE_PATCH)

    async def restart(self, deployment: str, at: str) -> DeploymentState:
        """`kubectl rollout restart`: a new pod-template annotation rolls every pod."""
        annotations = {"kubectl.kubernetes.io/restartedAt": at}
        patch = {"spec": {"template": {"metadata": {"annotations": annotations}}}}
        return await self._patch_deployment(deployment, patch, STRATEGIC_PATCH)

    async def ingress_route(self, name: str, host: str | None, path: str) -> Route:
        data = await self._call(self._net.read_namespaced_ingress, name, self.namespace)
        for i, rule in enumerate(data.get("spec", {}).get("rules", []) or []):
            if rule.get("host") != host:
                continue
            for j, p in enumerate((rule.get("http") or {}).get("paths", []) or []):
                if p.get("path", "/") == path:
                    return _ingress_route(data, i, j)
        raise NotFound(f"ingress {name} has no rule for {host or '*'}{path}")

    async def service_route(self, name: str, key: str) -> Route:
        data = await self._call(self._core.read_namespaced_service, name, self.namespace)
        value = (data.get("spec", {}).get("selector") or {}).get(key)
        pointer = "/spec/selector/" + key.replace("~", "~0").replace("/", "~1")
        return Route(name, pointer, value, str(data["metadata"]["resourceVersion"]))

    async def switch(self, kind: str, route: Route, new_value: str) -> Route:
        """The traffic switch: ONE conditional JSON patch of this service's route only. It applies
        only if that route (its host and path, and the backend value) is still what we checked;
        else Conflict, no retry. Not the object's resourceVersion: the traffic object is shared,
        and another service's switch or an annotation must not void this one.

        Returns the route as the API server wrote it (read from the patch's answer)."""
        tests = [*route.guards, (route.pointer, route.value)]
        patch: list[dict[str, Any]] = [{"op": "test", "path": p, "value": v} for p, v in tests]
        patch.append({"op": "replace", "path": route.pointer, "value": new_value})
        fn = self._net.patch_namespaced_ingress if kind == "ingress" else self._core.patch_namespaced_service
        data = await self._call(fn, route.object, self.namespace, patch, _content_type=JSON_PATCH)
        written = _at(data, route.pointer)
        rv = str(data["metadata"]["resourceVersion"])
        return Route(
            route.object, route.pointer, written if isinstance(written, str) else None, rv, route.guards
        )

    async def proxy_get(
        self,
        service: str,
        port: int,
        path: str,
        *,
        timeout: float | None = None,
        on_start: Callable[[float], None] | None = None,
        start_by: float | None = None,
    ) -> tuple[int, str]:
        """GET through the API server's service proxy (for probes from outside the cluster):
        the backend's status and body, or the API server's own refusal (a `Status` answer) in
        words; a backend's own 401 or 403 is its answer, not the bot's credentials. `timeout`,
        `on_start` and `start_by`: a probe's deadline starts when its request does, and a
        request that could not start by `start_by` is never sent (NotStarted)."""
        timeout = self._timeout if timeout is None else timeout
        if self._http is None:  # through an HTTP proxy: the official client knows how
            return await self._proxy_get_threaded(service, port, path, timeout, on_start, start_by)
        target = quote(f"{service}:{port}", safe=":")
        status, body = await self._http.get(
            f"/api/v1/namespaces/{quote(self.namespace, safe='')}/services/{target}/proxy/"
            + quote(path.lstrip("/"), safe="/"),
            timeout=timeout,
            on_start=on_start,
            start_by=start_by,
        )
        text = body.decode("utf-8", "replace")
        refusal = _status_message(text) if status >= 400 else None
        if status in (401, 403) and refusal is not None:  # the API server's own, not a backend's
            return status, f"Kubernetes refused the bot's credentials ({status})"
        return status, (f"Kubernetes answered {status}: {refusal}" if refusal else text)

    async def _proxy_get_threaded(
        self,
        service: str,
        port: int,
        path: str,
        timeout: float,
        on_start: Callable[[float], None] | None,
        start_by: float | None,
    ) -> tuple[int, str]:
        try:
            data = await self._call(
                self._core.connect_get_namespaced_service_proxy_with_path,
                f"{service}:{port}",
                self.namespace,
                path.lstrip("/"),
                raw=True,
                timeout=timeout,
                on_start=on_start,
                start_by=start_by,
            )
        except (Unreachable, NotStarted):
            raise  # no answer is not an answer: the caller says "no answer"
        except KubeError as exc:
            return 503, str(exc)
        return 200, data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)


def _status_message(text: str) -> str | None:
    """The message of a Kubernetes `Status` answer (the API server's own refusal, e.g. "no
    endpoints available"), or None when the body is the backend's."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        return str(doc.get("message") or doc.get("reason") or "no reason given")
    return None
