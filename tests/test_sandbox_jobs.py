"""Jobs and CronJobs on the sandbox, through the real `kubernetes` client and real kubectl: the
job controller makes pods the kubelet runs to completion, statuses as the real controllers write
them, the seeded PayFlow backups with history, and the admin knob that fails the next run."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from sandbox.cluster import Cluster
from sandbox.k8s_api import SandboxServer
from sandbox.local import wait_until
from tests.test_kubectl import Kubectl

NS = "payflow"
T = 5
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on this machine")


@pytest.fixture
def batch(kubeconfig: Path, k8s_view) -> k8s.BatchV1Api:  # k8s_view: seeded and settled
    return k8s.BatchV1Api(k8s_config.new_client_from_config(config_file=str(kubeconfig)))


@pytest.fixture
def core(kubeconfig: Path) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(kubeconfig)))


def _finished(batch: k8s.BatchV1Api, name: str) -> Any:
    def probe() -> Any:
        job = batch.read_namespaced_job(name, NS, _request_timeout=T)
        done = {c.type for c in job.status.conditions or [] if c.status == "True"} & {"Complete", "Failed"}
        return job if done else None

    return wait_until(probe, 15, f"job {name} to finish", poll=0.05)


def _job(name: str, annotations: dict[str, str], backoff_limit: int = 0, restart: str = "Never") -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"restartPolicy": restart, "containers": [{"name": "task", "image": "busybox:1.36"}]},
            },
        },
    }


def _admin(sandbox: SandboxServer, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method,
        f"{sandbox.url}/sandbox/{path}",
        json=body,
        headers={"Authorization": f"Bearer {sandbox.token}"},
        verify=sandbox.ssl_context(),
        timeout=5,
    )


def _manual_run(batch: k8s.BatchV1Api, cronjob: str, name: str) -> Any:
    """What `kubectl create job NAME --from=cronjob/CRON` sends, through the Python client."""
    cron = batch.read_namespaced_cron_job(cronjob, NS, _request_timeout=T)
    template = cron.spec.job_template
    body = k8s.V1Job(
        metadata=k8s.V1ObjectMeta(
            name=name,
            labels=template.metadata.labels,
            annotations={"cronjob.kubernetes.io/instantiate": "manual"},
            owner_references=[
                k8s.V1OwnerReference(
                    api_version="batch/v1",
                    kind="CronJob",
                    name=cronjob,
                    uid=cron.metadata.uid,
                    controller=True,
                )
            ],
        ),
        spec=template.spec,
    )
    return batch.create_namespaced_job(NS, body, _request_timeout=T)


@needs_kubectl
def test_kubectl_create_job_from_the_backup_cronjob(sandbox: SandboxServer, batch, core, tmp_path: Path):
    kubectl = Kubectl(sandbox.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path)
    before = batch.read_namespaced_cron_job("postgres-backup", NS, _request_timeout=T).status
    out = kubectl("create job backup-now --from=cronjob/postgres-backup -n payflow")
    assert out.stdout.strip() == "job.batch/backup-now created"
    waited = kubectl("wait --for=condition=complete job/backup-now -n payflow --timeout=30s")
    assert waited.stdout.strip() == "job.batch/backup-now condition met"

    job = batch.read_namespaced_job("backup-now", NS, _request_timeout=T)
    [owner] = job.metadata.owner_references
    assert (owner.kind, owner.name, owner.controller) == ("CronJob", "postgres-backup", True)
    assert job.metadata.annotations["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job.status.succeeded == 1 and job.status.failed is None and job.status.active is None
    assert job.status.start_time <= job.status.completion_time
    complete = {c.type: c for c in job.status.conditions}
    assert complete["Complete"].reason == "CompletionsReached" and "SuccessCriteriaMet" in complete

    [pod] = core.list_namespaced_pod(NS, label_selector="job-name=backup-now", _request_timeout=T).items
    assert pod.metadata.labels["controller-uid"] == job.metadata.uid
    assert (
        pod.metadata.owner_references[0].kind == "Job"
        and pod.metadata.owner_references[0].uid == job.metadata.uid
    )
    terminated = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Succeeded" and (terminated.exit_code, terminated.reason) == (0, "Completed")

    logs = kubectl("logs job/backup-now -n payflow").stdout.splitlines()
    assert 'pg_dump: dumping contents of table "public.transactions"' in logs
    size = job.metadata.annotations["backup.payflow.io/size-bytes"]
    assert logs[-1] == f"backup: annotated job.batch/backup-now backup.payflow.io/size-bytes={size}"
    assert int(size) > 0

    after = batch.read_namespaced_cron_job("postgres-backup", NS, _request_timeout=T).status
    assert after.last_successful_time == job.status.completion_time > before.last_successful_time
    assert after.last_schedule_time == job.status.start_time and not after.active

    header, *rows = kubectl("get jobs -n payflow").stdout.strip().splitlines()
    assert header.split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert next(r.split() for r in rows if r.startswith("backup-now "))[1:3] == ["Complete", "1/1"]
    header, *rows = kubectl("get cronjobs -n payflow").stdout.strip().splitlines()
    assert header.split()[:5] == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE"]
    assert next(r for r in rows if r.startswith("postgres-backup ")).split()[1:6] == [
        "0",
        "2",
        "*",
        "*",
        "*",
    ]


def test_the_admin_knob_fails_the_next_run_only(sandbox: SandboxServer, cluster: Cluster, batch, core):
    last_success = batch.read_namespaced_cron_job("postgres-backup", NS, _request_timeout=T).status
    # bad input is refused and arms nothing
    refused = _admin(sandbox, "POST", "fail-next-run", {"namespace": NS, "cronjob": "no-such-backup"})
    assert refused.status_code == 404
    assert refused.json()["message"] == 'cronjobs.batch "no-such-backup" not found'
    refused = _admin(
        sandbox, "POST", "fail-next-run", {"namespace": NS, "cronjob": "postgres-backup", "exit_code": 0}
    )
    assert refused.status_code == 400 and "exit_code must be 1-255" in refused.json()["message"]
    assert _admin(sandbox, "POST", "fail-next-run", {"cronjob": "postgres-backup"}).status_code == 400
    assert _admin(sandbox, "GET", "fail-next-run").json() == {"pending": []}

    armed = _admin(sandbox, "POST", "fail-next-run", {"namespace": NS, "cronjob": "postgres-backup"})
    assert armed.status_code == 200 and armed.json()["log"] == "pg_dump: error: connection to server failed"
    _manual_run(batch, "postgres-backup", "backup-broken")
    job = _finished(batch, "backup-broken")
    failed = {c.type: c for c in job.status.conditions}
    assert "Complete" not in failed and failed["Failed"].reason == "BackoffLimitExceeded"
    assert failed["Failed"].message == "Job has reached the specified backoff limit"
    assert job.status.failed == 1 and job.status.completion_time is None
    assert "backup.payflow.io/size-bytes" not in (job.metadata.annotations or {})
    [pod] = core.list_namespaced_pod(NS, label_selector="job-name=backup-broken", _request_timeout=T).items
    terminated = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Failed" and (terminated.exit_code, terminated.reason) == (1, "Error")
    log = core.read_namespaced_pod_log(pod.metadata.name, NS, _request_timeout=T)
    assert log.splitlines()[-1] == "pg_dump: error: connection to server failed"
    cron = batch.read_namespaced_cron_job("postgres-backup", NS, _request_timeout=T).status
    assert cron.last_successful_time == last_success.last_successful_time

    _manual_run(batch, "postgres-backup", "backup-again")  # the knob was for one run
    assert _finished(batch, "backup-again").status.succeeded == 1


def test_a_job_does_what_its_template_says(batch, core):
    w = k8s_watch.Watch()
    phases: list[str] = []
    job = _job(
        "flaky",
        {"sandbox.payflow.io/runtime-seconds": "0.4", "sandbox.payflow.io/exit-code": "3",
         "sandbox.payflow.io/log": "step 1\nstep 2: boom"},
        backoff_limit=1,
    )  # fmt: skip
    created = batch.create_namespaced_job(NS, job, _request_timeout=T)
    assert created.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": created.metadata.uid}
    assert created.spec.template.metadata.labels["job-name"] == "flaky"
    for event in w.stream(
        core.list_namespaced_pod, NS, label_selector="job-name=flaky", timeout_seconds=20, _request_timeout=25
    ):
        pod = event["object"]
        if not phases or phases[-1] != pod.status.phase:
            phases.append(pod.status.phase)
        if phases.count("Failed") == 1 and pod.status.phase == "Failed":
            w.stop()
    assert phases[:3] == ["Pending", "Running", "Failed"]
    done = _finished(batch, "flaky")
    assert done.status.failed == 2 and done.status.succeeded is None  # backoffLimit 1: one retry
    pods = core.list_namespaced_pod(NS, label_selector="job-name=flaky", _request_timeout=T).items
    assert len(pods) == 2 and all(
        p.status.container_statuses[0].state.terminated.exit_code == 3 for p in pods
    )
    log = core.read_namespaced_pod_log(pods[0].metadata.name, NS, _request_timeout=T)
    assert log == "step 1\nstep 2: boom\n"

    batch.create_namespaced_job(
        NS, _job("quick", {"sandbox.payflow.io/runtime-seconds": "0.2"}), _request_timeout=T
    )
    ok = _finished(batch, "quick")
    assert ok.status.succeeded == 1 and ok.status.completion_time is not None
    assert batch.read_namespaced_job_status("quick", NS, _request_timeout=T).status.succeeded == 1

    batch.delete_namespaced_job("flaky", NS, _request_timeout=T)  # its pods go with it
    assert core.list_namespaced_pod(NS, label_selector="job-name=flaky", _request_timeout=T).items == []


def test_bad_jobs_are_refused_and_change_nothing(batch, cluster: Cluster):
    before = len(cluster.list("Job", NS)), len(cluster.list("CronJob", NS)), cluster.resource_version
    cases = [
        (
            batch.create_namespaced_job,
            _job("always", {}, restart="Always"),
            'spec.template.spec.restartPolicy: Unsupported value: "Always": '
            'supported values: "OnFailure", "Never"',
        ),
        (
            batch.create_namespaced_job,
            _job("slow", {"sandbox.payflow.io/runtime-seconds": "soon"}),
            'annotations[sandbox.payflow.io/runtime-seconds]: Invalid value: "soon"',
        ),
        (
            batch.create_namespaced_job,
            _job("odd", {"sandbox.payflow.io/program": "rm-rf"}),
            'Unsupported value: "rm-rf": supported values: "postgres-backup", "restore-drill"',
        ),
        (
            batch.create_namespaced_cron_job,
            {
                "metadata": {"name": "nightly"},
                "spec": {"schedule": "every night", "jobTemplate": {"spec": _job("x", {})["spec"]}},
            },
            'spec.schedule: Invalid value: "every night": expected exactly 5 fields, found 2',
        ),
    ]
    for create, body, message in cases:
        with pytest.raises(ApiException) as err:
            create(NS, body, _request_timeout=T)
        assert err.value.status == 422 and message in json.loads(err.value.body)["message"]
    after = len(cluster.list("Job", NS)), len(cluster.list("CronJob", NS)), cluster.resource_version
    assert after == before


def _ago(stamp: datetime) -> float:
    return (datetime.now(UTC) - stamp).total_seconds() / 3600


def test_the_seeded_backups_have_history(batch, core):
    jobs = batch.list_namespaced_job(NS, _request_timeout=T).items
    backups = sorted(
        (j for j in jobs if j.metadata.owner_references[0].name == "postgres-backup"),
        key=lambda j: j.status.start_time,
    )
    outcomes = [
        next(c.type for c in j.status.conditions if c.type in ("Complete", "Failed")) for j in backups
    ]
    assert outcomes == ["Failed", "Complete", "Complete", "Complete"]
    assert [round(_ago(j.status.start_time)) for j in backups] == [82, 58, 34, 10]
    sizes = [int(j.metadata.annotations["backup.payflow.io/size-bytes"]) for j in backups[1:]]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3  # the database grows
    cron = batch.read_namespaced_cron_job("postgres-backup", NS, _request_timeout=T)
    assert cron.status.last_successful_time == backups[-1].status.completion_time
    failed_pod = core.list_namespaced_pod(
        NS, label_selector=f"job-name={backups[0].metadata.name}", _request_timeout=T
    ).items[0]
    assert "Connection refused" in core.read_namespaced_pod_log(
        failed_pod.metadata.name, NS, _request_timeout=T
    )

    [drill] = [j for j in jobs if j.metadata.owner_references[0].name == "restore-drill"]
    [pod] = core.list_namespaced_pod(
        NS, label_selector=f"job-name={drill.metadata.name}", _request_timeout=T
    ).items
    lines = core.read_namespaced_pod_log(pod.metadata.name, NS, _request_timeout=T).splitlines()
    restored_from = backups[2].metadata.annotations["backup.payflow.io/location"]  # the dump before the drill
    assert lines[0].startswith(f"restore-drill: latest dump {restored_from} ")
    tables = [dict(kv.split("=") for kv in line.split()) for line in lines if line.startswith("table=")]
    assert lines[-len(tables) :] == [line for line in lines if line.startswith("table=")]
    assert len(tables) == 6 and all(
        t["restored"] == t["production"] and int(t["restored"]) > 0 for t in tables
    )


def test_deleting_a_cronjob_deletes_its_jobs_and_their_pods(batch, core):
    owned = [
        j.metadata.name
        for j in batch.list_namespaced_job(NS, _request_timeout=T).items
        if "backup" in j.metadata.name
    ]
    assert owned
    batch.delete_namespaced_cron_job("postgres-backup", NS, _request_timeout=T)
    left = [j.metadata.name for j in batch.list_namespaced_job(NS, _request_timeout=T).items]
    assert not set(owned) & set(left) and left  # the drill's job stays
    pods = core.list_namespaced_pod(NS, _request_timeout=T).items
    assert not [p for p in pods if (p.metadata.labels or {}).get("job-name") in owned]
