"""Fill a sandbox cluster with the catalog's PayFlow: both colors of every service, blue live
with three replicas, green idle at zero, the way the guide leaves a cluster after a bake; and
its NetworkPolicies and database CronJobs with their history (``sandbox.seed_extras``)."""

from __future__ import annotations

import time
from typing import Any

from bot.config.catalog import COLORS, Catalog, Color, ServiceSpec, Traffic
from sandbox import seed_extras

SEED_VERSION = "v1.0.0"
LIVE: Color = "blue"


def _labels(service: str, color: Color) -> dict[str, str]:
    return {"app": service, "color": color}


def deployment(catalog: Catalog, service: str, color: Color, version: str = SEED_VERSION) -> dict[str, Any]:
    spec = catalog.service(service)
    labels = _labels(service, color)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": catalog.deployment_name(service, color),
            "namespace": catalog.namespace,
            "labels": {**labels, "app.kubernetes.io/part-of": "payflow"},
        },
        "spec": {
            "replicas": spec.replicas if color == LIVE else 0,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": catalog.container_name(service),
                            "image": f"{catalog.image_repository(service)}:{version}",
                            "ports": [{"containerPort": spec.port}],
                            "readinessProbe": {"httpGet": {"path": spec.health_path, "port": spec.port}},
                        }
                    ]
                },
            },
        },
    }


def k8s_service(catalog: Catalog, service: str, color: Color) -> dict[str, Any]:
    port = catalog.service(service).port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": catalog.k8s_service_name(service, color), "namespace": catalog.namespace},
        "spec": {"selector": _labels(service, color), "ports": [{"port": port, "targetPort": port}]},
    }


def traffic_objects(catalog: Catalog) -> list[tuple[str, dict[str, Any]]]:
    """Ingresses (grouped by name and host) and selector Services that send traffic to blue."""
    ingresses: dict[str, dict[str | None, list[dict[str, Any]]]] = {}
    objects: list[tuple[str, dict[str, Any]]] = []
    for name, spec in catalog.services.items():
        traffic = spec.traffic
        if traffic.kind == "ingress":
            path = {
                "path": traffic.path,
                "pathType": "Prefix",
                "backend": {
                    "service": {"name": catalog.k8s_service_name(name, LIVE), "port": {"number": spec.port}}
                },
            }
            ingresses.setdefault(traffic.name, {}).setdefault(traffic.host, []).append(path)
        else:
            selector = {"app": name, traffic.selector_key: LIVE}
            body = {"selector": selector, "ports": [{"port": spec.port, "targetPort": spec.port}]}
            meta = {"name": traffic.name, "namespace": catalog.namespace}
            objects.append(
                ("Service", {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": body})
            )
    for ingress, hosts in ingresses.items():
        rules = [{**({"host": h} if h else {}), "http": {"paths": paths}} for h, paths in hosts.items()]
        meta = {"name": ingress, "namespace": catalog.namespace}
        body = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": meta,
            "spec": {"rules": rules},
        }
        objects.append(("Ingress", body))
    return objects


def with_services(catalog: Catalog, total: int) -> Catalog:
    """The catalog grown to `total` services -- its own first, then ``svc-0001``… with one replica
    each, routed by their own path on the catalog's ingress -- for a PayFlow at scale
    (`payflow-bot sandbox --services N`)."""
    if total < len(catalog.services):
        raise ValueError(f"the catalog already has {len(catalog.services)} services; ask for at least that")
    services = dict(catalog.services)
    first = next(iter(catalog.services.values()), None)
    ingress = first.traffic if first is not None and first.traffic.kind == "ingress" else Traffic()
    number = 0
    while len(services) < total:
        number += 1
        name = f"svc-{number:04d}"
        if name not in services:
            traffic = ingress.model_copy(update={"path": f"/{name}"})
            services[name] = ServiceSpec(port=8080, replicas=1, traffic=traffic)
    return catalog.model_copy(update={"services": services})


def seed(cluster: Any, catalog: Catalog) -> Any:
    with cluster.batch():  # linear in the number of services
        for service in catalog.services:
            for color in COLORS:
                cluster.create("Deployment", deployment(catalog, service, color))
                cluster.create("Service", k8s_service(catalog, service, color))
        for kind, obj in traffic_objects(catalog):
            cluster.create(kind, obj)
        for policy in seed_extras.network_policies(catalog):
            cluster.create("NetworkPolicy", policy)
        for config_map in seed_extras.config_maps(catalog):
            cluster.create("ConfigMap", config_map)
        for cronjob in seed_extras.cronjobs(catalog):
            cluster.create("CronJob", cronjob)
    seed_extras.seed_history(cluster, catalog)
    from sandbox.traffic import Traffic

    cluster.traffic = Traffic(cluster, catalog)  # synthetic requests, scraped at GET /metrics
    return cluster


def wait_until_ready(cluster: Any, catalog: Catalog, timeout: float = 10.0) -> None:
    """Block until every seeded deployment has all its pods ready (the controller runs in the
    server's ticker), so a fresh sandbox starts in the steady state the guide describes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = cluster.list("Deployment", catalog.namespace)
        if all((d.get("status", {}).get("readyReplicas") or 0) == d["spec"]["replicas"] for d in items):
            return
        time.sleep(0.02)
    raise TimeoutError("sandbox deployments did not become ready")
