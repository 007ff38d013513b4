"""What a real PayFlow namespace holds besides its services: NetworkPolicies, ConfigMaps, and the
database CronJobs with a few days of history.

NetworkPolicies: default-deny ingress for every pod, then per service an ingress allow and an
egress allow selecting its pods by the labels they carry (``app``) -- except the catalog's LAST
service, left with neither, so a coverage report has a finding whatever the catalog's size.
Two policies a service: seeding stays linear for 1,000-service catalogs.

ConfigMaps: the shared settings, one service's settlement settings with a test card number in a
fixture, and a legacy batch's config holding a database password -- what a namespace accumulates,
and what a config backup posted to chat must never show as is.

CronJobs: ``postgres-backup`` (nightly pg_dump; the Job is annotated with the dump's size on
success) and ``restore-drill`` (weekly; restores the latest dump into a scratch database and
compares row counts); see ``sandbox.apiserver.programs``. History: postgres-backup runs that
failed ~82 h ago and succeeded ~58 h, ~34 h and ~10 h ago, a restore drill ~32 h ago.
"""

from __future__ import annotations

from typing import Any

from bot.config.catalog import Catalog

DEFAULT_DENY = "default-deny-ingress"
BACKUP_CRONJOB = "postgres-backup"
DRILL_CRONJOB = "restore-drill"
DEPENDENCIES = (("postgres", 5432), ("redis", 6379), ("rabbitmq", 5672))
INGRESS_NAMESPACE = "ingress-nginx"
HOUR = 3600.0
# (hours ago, cronjob, fails): oldest first, so the drill restores the dump before it
HISTORY = (
    (82, BACKUP_CRONJOB, True),
    (58, BACKUP_CRONJOB, False),
    (34, BACKUP_CRONJOB, False),
    (32, DRILL_CRONJOB, False),
    (10, BACKUP_CRONJOB, False),
)
BACKUP_FAILURE = (
    'pg_dump: error: connection to server at "postgres.{namespace}.svc" (10.96.0.12), port 5432 failed: '
    "Connection refused"
)


def _policy(catalog: Catalog, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": catalog.namespace,
            "labels": {"app.kubernetes.io/part-of": "payflow"},
        },
        "spec": spec,
    }


def _ports(*ports: int, protocol: str = "TCP") -> list[dict[str, Any]]:
    return [{"protocol": protocol, "port": p} for p in ports]


def _dependencies_egress() -> list[dict[str, Any]]:
    dns = {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [*_ports(53, protocol="UDP"), *_ports(53)],
    }
    rules = [
        {"to": [{"podSelector": {"matchLabels": {"app": dep}}}], "ports": _ports(port)}
        for dep, port in DEPENDENCIES
    ]
    return [dns, *rules]


def network_policies(catalog: Catalog) -> list[dict[str, Any]]:
    """The namespace's NetworkPolicies; the last catalog service is deliberately uncovered."""
    services = list(catalog.services)
    out = [_policy(catalog, DEFAULT_DENY, {"podSelector": {}, "policyTypes": ["Ingress"]})]
    gateway = services[0] if services else None
    for service in services[:-1]:
        spec = catalog.service(service)
        peers: list[dict[str, Any]] = []
        if spec.traffic.kind == "ingress":
            peers.append(
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": INGRESS_NAMESPACE}}}
            )
        if service != gateway:
            peers.append({"podSelector": {"matchLabels": {"app": gateway}}})
        selector = {"matchLabels": {"app": service}}
        ingress = [{"from": peers or [{"podSelector": {}}], "ports": _ports(spec.port)}]
        out.append(
            _policy(
                catalog,
                f"{service}-allow-ingress",
                {"podSelector": selector, "policyTypes": ["Ingress"], "ingress": ingress},
            )
        )
        egress = _dependencies_egress()
        if service == gateway:
            egress.append({"to": [{"podSelector": {}}]})  # the gateway calls every service
        out.append(
            _policy(
                catalog,
                f"{service}-allow-egress",
                {"podSelector": selector, "policyTypes": ["Egress"], "egress": egress},
            )
        )
    jobs = {"matchExpressions": [{"key": "app", "operator": "In", "values": [BACKUP_CRONJOB, DRILL_CRONJOB]}]}
    storage = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}], "ports": _ports(443)}
    out.append(
        _policy(
            catalog,
            "db-jobs-allow-egress",
            {
                "podSelector": jobs,
                "policyTypes": ["Egress"],
                "egress": [*_dependencies_egress()[:2], storage],
            },
        )
    )
    return out


def config_maps(catalog: Catalog) -> list[dict[str, Any]]:
    ns = catalog.namespace
    services = list(catalog.services)
    owner = services[min(2, len(services) - 1)] if services else "wallet-service"
    data: list[tuple[str, dict[str, str]]] = [
        (
            "payflow-config",
            {
                "NODE_ENV": "production",
                "LOG_LEVEL": "info",
                "POSTGRES_HOST": f"postgres.{ns}.svc",
                "REDIS_HOST": f"redis.{ns}.svc",
                "RABBITMQ_HOST": f"rabbitmq.{ns}.svc",
                "CURRENCY": "EUR",
            },
        ),
        (
            f"{owner}-settlement",
            {
                "settlement.yaml": (
                    "cutoff: '22:00'\n"
                    "timezone: Europe/Amsterdam\n"
                    "provider_url: https://acquirer.example.com/v2/settle\n"
                    "smoke_test:\n"
                    "  card: 4111 1111 1111 1111\n"
                    "  amount_cents: 100\n"
                ),
                "BATCH_SIZE": "500",
            },
        ),
        (
            "legacy-reconciliation",
            {
                "DB_HOST": f"postgres.{ns}.svc",
                "DB_USER": "reconciler",
                "DB_PASSWORD": "Payfl0w-Recon-2023!",
                "SCHEDULE": "0 3 * * *",
            },
        ),
    ]
    labels = {"app.kubernetes.io/part-of": "payflow"}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "labels": dict(labels)},
            "data": values,
        }
        for name, values in data
    ]


def _cronjob(catalog: Catalog, name: str, schedule: str, script: str, program: str) -> dict[str, Any]:
    labels = {"app": name, "app.kubernetes.io/part-of": "payflow"}
    env = [
        {"name": "PGHOST", "value": f"postgres.{catalog.namespace}.svc"},
        {"name": "PGDATABASE", "value": "payflow"},
        {"name": "BACKUP_BUCKET", "value": "s3://payflow-backups/postgres"},
    ]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": catalog.namespace, "labels": labels},
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": 0,
                    "activeDeadlineSeconds": 3600,
                    "template": {
                        "metadata": {
                            "labels": labels,
                            "annotations": {
                                "sandbox.payflow.io/program": program,
                                "sandbox.payflow.io/runtime-seconds": "2",
                            },
                        },
                        "spec": {
                            "restartPolicy": "Never",
                            "serviceAccountName": name,
                            "containers": [
                                {"name": name, "image": "postgres:16.4", "command": [script], "env": env}
                            ],
                        },
                    },
                },
            },
        },
    }


def cronjobs(catalog: Catalog) -> list[dict[str, Any]]:
    return [
        _cronjob(catalog, BACKUP_CRONJOB, "0 2 * * *", "/scripts/backup.sh", "postgres-backup"),
        _cronjob(catalog, DRILL_CRONJOB, "30 5 * * 0", "/scripts/restore-drill.sh", "restore-drill"),
    ]


def seed_history(cluster: Any, catalog: Catalog) -> None:
    """Past runs of the CronJobs, so "when did the last backup succeed" has an answer at once."""
    log = BACKUP_FAILURE.format(namespace=catalog.namespace)
    failure = {"sandbox.payflow.io/exit-code": "1", "sandbox.payflow.io/log": log}
    for hours, cronjob, fails in HISTORY:
        cluster.run_past(catalog.namespace, cronjob, hours * HOUR, failure=failure if fails else None)
