"""The job controller and the CronJob bookkeeping of kube-controller-manager.

A Job gets pods from its template (``job-name``/``controller-uid`` labels, an ownerReference
to the Job), the kubelet runs them to completion (``sandbox.apiserver.runs``), and the Job's
status follows as the real controller writes it: ``startTime``, ``active``/``ready``,
``succeeded``/``failed``, then ``SuccessCriteriaMet`` + ``Complete`` (with ``completionTime``)
or ``FailureTarget`` + ``Failed`` (``BackoffLimitExceeded``) once more pods failed than
``backoffLimit`` allows. A failed pod is replaced at once, without the real exponential delay.

CronJobs are NOT scheduled on time here: their Jobs are made by ``kubectl create job --from=
cronjob/...``, by seeding (:meth:`JobController.run_past`) or by a test. What the CronJob
controller records about the Jobs it owns is kept, though: ``status.active`` while one runs,
``lastScheduleTime`` when one starts, ``lastSuccessfulTime`` when one succeeds, and the
success/failure history limits (older finished Jobs are deleted with their pods).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sandbox.apiserver import admission_more, programs, runs
from sandbox.apiserver.events import NODE_NAME, EventRecorder
from sandbox.apiserver.kinds import JSON, KINDS, ApiError, meta
from sandbox.apiserver.kubelet import Kubelet
from sandbox.apiserver.storage import Store

MANUAL_ANNOTATION = "cronjob.kubernetes.io/instantiate"
SCHEDULED_TIME_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
_DONE = ("Complete", "Failed")


@dataclass
class JobSim:
    uid: str
    pods: list[str] = field(default_factory=list)
    counted: set[str] = field(default_factory=set)  # pods whose outcome is in the counters
    succeeded: int = 0
    failed: int = 0
    runs: dict[str, runs.Run] = field(default_factory=dict)


def job_from_cronjob(cronjob: JSON, name: str, *, manual: bool) -> JSON:
    """The Job a CronJob makes (or ``kubectl create job --from=cronjob/...`` makes, ``manual``)."""
    template = cronjob["spec"]["jobTemplate"]
    tmeta = template.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    if manual:
        annotations[MANUAL_ANNOTATION] = "manual"
    cmeta = cronjob["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": cmeta["namespace"],
            "labels": dict(tmeta.get("labels") or {}),
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": cmeta["name"],
                    "uid": cmeta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": copy.deepcopy(template["spec"]),
    }


def finished(job: JSON) -> str | None:
    """``Complete`` or ``Failed`` once the Job has that condition, else None."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in _DONE and cond.get("status") == "True":
            return str(cond["type"])
    return None


def _controller_of(obj: JSON, kind: str) -> JSON | None:
    return next(
        (
            r
            for r in obj["metadata"].get("ownerReferences") or []
            if r.get("kind") == kind and r.get("controller")
        ),
        None,
    )


def _wall(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


class JobController:
    """``remove(kind, ns, name)`` deletes an object the way the cluster deletes any (with what it
    owns), so history trimming and a Job's deletion go through the same path as ``kubectl delete``."""

    def __init__(
        self, store: Store, kubelet: Kubelet, events: EventRecorder, remove: Callable[[str, str, str], None]
    ) -> None:
        self._store = store
        self._kubelet = kubelet
        self._events = events
        self._remove = remove
        self.jobs: dict[tuple[str, str], JobSim] = {}
        self.pending: set[tuple[str, str]] = set()  # Jobs not finished: few at any time
        # (namespace, cronjob) -> annotations the next run's pod gets (admin: make it fail)
        self.next_run: dict[tuple[str, str], dict[str, str]] = {}

    # ------------------------------------------------------------------ knobs

    def fail_next_run(self, ns: str, cronjob: str, exit_code: int, log: str) -> None:
        """The next Job of `cronjob` fails: its first pod exits `exit_code` printing `log`."""
        self._store.must_get(KINDS["CronJob"], ns, cronjob)
        annotations = {runs.EXIT_CODE: str(exit_code), runs.LOG: log}
        runs.validate(annotations, "", lambda path, message: ApiError.bad_request(f"{path}: {message}"))
        self.next_run[(ns, cronjob)] = annotations

    # ------------------------------------------------------------------ lifecycle

    def touch(self, ns: str, name: str) -> None:
        self.pending.add((ns, name))

    def sync_pending(self, now: float) -> None:
        jobs = self._store.objects["Job"]
        for key in sorted(self.pending):
            job = jobs.get(key)
            if job is None or self.sync(key[0], job, now):
                self.pending.discard(key)

    def forget_job(self, ns: str, name: str) -> list[str]:
        """The Job is gone: its pods, for the cluster to delete."""
        self.pending.discard((ns, name))
        jsim = self.jobs.pop((ns, name), None)
        return list(jsim.pods) if jsim else []

    def owned_jobs(self, ns: str, cronjob: JSON) -> list[JSON]:
        uid = cronjob["metadata"]["uid"]
        return [
            job
            for (job_ns, _), job in self._store.items("Job")
            if job_ns == ns and (_controller_of(job, "CronJob") or {}).get("uid") == uid
        ]

    def sync(self, ns: str, job: JSON, now: float) -> bool:
        """One pass of the job controller; True once the Job is finished (nothing left to do)."""
        md, spec = job["metadata"], job.get("spec") or {}
        if finished(job):
            return True
        jsim = self.jobs.get((ns, md["name"]))
        if jsim is None or jsim.uid != md["uid"]:
            jsim = self.jobs[(ns, md["name"])] = JobSim(uid=md["uid"])
        if spec.get("suspend"):
            return True
        pods = self._store.objects["Pod"]
        for pod_name in jsim.pods:
            if pod_name in jsim.counted:
                continue
            phase = ((pods.get((ns, pod_name)) or {}).get("status") or {}).get("phase")
            if (ns, pod_name) not in pods or phase == "Failed":  # a deleted pod counts as failed
                jsim.failed += 1
                jsim.counted.add(pod_name)
            elif phase == "Succeeded":
                jsim.succeeded += 1
                jsim.counted.add(pod_name)
                self._annotate(job, jsim.runs.get(pod_name))
        active = [p for p in jsim.pods if p not in jsim.counted]
        completions = int(spec.get("completions") or 1)
        outcome = None
        if jsim.succeeded >= completions:
            outcome = "Complete"
        elif jsim.failed > int(spec.get("backoffLimit", 6)):
            outcome = "Failed"
            for pod_name in active:
                self._remove("Pod", ns, pod_name)
            active = []
        else:
            want = min(int(spec.get("parallelism", 1)), completions - jsim.succeeded)
            while len(active) < want:
                active.append(self._create_pod(ns, job, jsim, now))
        self._publish(ns, job, jsim, active, outcome, now)
        return outcome is not None

    def _create_pod(self, ns: str, job: JSON, jsim: JobSim, now: float) -> str:
        md, template = job["metadata"], job["spec"]["template"]
        while True:
            pod_name = f"{md['name']}-{self._store.suffix()}"
            if (ns, pod_name) not in self._store.objects["Pod"]:
                break
        tmeta = template.get("metadata") or {}
        annotations = dict(tmeta.get("annotations") or {})
        cron = _controller_of(job, "CronJob")
        if cron is not None:
            annotations.update(self.next_run.pop((ns, cron["name"]), {}))
        pod_spec = copy.deepcopy(template.get("spec") or {})
        pod_spec.setdefault("serviceAccountName", "default")
        pod_spec["nodeName"] = NODE_NAME
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "generateName": f"{md['name']}-",
                "namespace": ns,
                "uid": self._store.uid(),
                "creationTimestamp": self._store.ts(now),
                "labels": dict(tmeta.get("labels") or {}),
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": md["name"],
                        "uid": md["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": pod_spec,
            "status": {"phase": "Pending"},
        }
        run = runs.from_annotations(annotations, self._program(ns, md["name"], annotations, now))
        self._store.put(KINDS["Pod"], ns, pod_name, pod)
        jsim.pods.append(pod_name)
        jsim.runs[pod_name] = run
        self._kubelet.register_pod(ns, pod, None, now, run)
        self._events.event(
            ns, job, "Normal", "SuccessfulCreate", f"Created pod: {pod_name}", "job-controller", now
        )
        return pod_name

    def _program(self, ns: str, job: str, annotations: dict[str, str], now: float) -> runs.Run | None:
        program = annotations.get(runs.PROGRAM)
        if program == "postgres-backup":
            return programs.postgres_backup(job, ns, now + self._store.wall_offset)
        if program == "restore-drill":
            return programs.restore_drill(job, ns, self.latest_dump(ns))
        return None

    def latest_dump(self, ns: str) -> programs.Dump | None:
        """The newest dump a finished backup Job of the namespace recorded on itself."""
        best: tuple[str, programs.Dump] | None = None
        for (job_ns, _), job in self._store.items("Job"):
            annotations = job["metadata"].get("annotations") or {}
            status = job.get("status") or {}
            if job_ns != ns or finished(job) != "Complete" or programs.SIZE_ANNOTATION not in annotations:
                continue
            dump = programs.Dump(
                location=annotations.get(programs.LOCATION_ANNOTATION, ""),
                size_bytes=int(annotations[programs.SIZE_ANNOTATION]),
                snapshot=_wall(status["startTime"]),
            )
            if best is None or status["completionTime"] > best[0]:
                best = (status["completionTime"], dump)
        return best[1] if best else None

    def _annotate(self, job: JSON, run: runs.Run | None) -> None:
        """What the succeeded program wrote onto its own Job (the backup's dump size)."""
        if run is not None and run.job_annotations and not run.exit_code:
            meta(job).setdefault("annotations", {}).update(run.job_annotations)
            self._store.bump(job)

    # ------------------------------------------------------------------ status

    def _publish(
        self, ns: str, job: JSON, jsim: JobSim, active: list[str], outcome: str | None, now: float
    ) -> None:
        old = job.get("status") or {}
        ts = self._store.ts(now)
        pods = self._store.objects["Pod"]
        ready = sum(
            1
            for p in active
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in ((pods.get((ns, p)) or {}).get("status") or {}).get("conditions") or []
            )
        )
        status: JSON = {"startTime": old.get("startTime") or ts}
        if active:
            status["active"] = len(active)
        status["ready"] = ready
        if jsim.succeeded:
            status["succeeded"] = jsim.succeeded
        if jsim.failed:
            status["failed"] = jsim.failed
        status["terminating"] = 0
        status["uncountedTerminatedPods"] = {}
        if outcome is not None:
            if outcome == "Complete":
                reason, message, first = (
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    "SuccessCriteriaMet",
                )
                status["completionTime"] = ts
            else:
                reason, message, first = (
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    "FailureTarget",
                )
            status["conditions"] = [
                {
                    "type": kind,
                    "status": "True",
                    "lastProbeTime": ts,
                    "lastTransitionTime": ts,
                    "reason": reason,
                    "message": message,
                }
                for kind in (first, outcome)
            ]
        if status != old:
            job["status"] = status
            self._store.bump(job)
        if not old.get("startTime"):
            self._cronjob_saw(ns, job, None, now)
        if outcome is not None:
            if outcome == "Complete":
                self._events.event(ns, job, "Normal", "Completed", "Job completed", "job-controller", now)
            else:
                self._events.event(ns, job, "Warning", "BackoffLimitExceeded", message, "job-controller", now)
            self._cronjob_saw(ns, job, outcome, now)

    def _cronjob_saw(self, ns: str, job: JSON, outcome: str | None, now: float) -> None:
        """The owning CronJob's status: the Job in ``active`` while it runs; times and history after."""
        ref = _controller_of(job, "CronJob")
        cron = self._store.get("CronJob", ns, ref["name"]) if ref else None
        if cron is None or ref is None or cron["metadata"]["uid"] != ref.get("uid"):
            return
        md = job["metadata"]
        status = copy.deepcopy(cron.get("status") or {})
        others = [a for a in status.get("active") or [] if a.get("uid") != md["uid"]]
        if outcome is None:
            others.append(
                {
                    "kind": "Job",
                    "namespace": ns,
                    "name": md["name"],
                    "uid": md["uid"],
                    "apiVersion": "batch/v1",
                    "resourceVersion": md.get("resourceVersion", ""),
                }
            )
            started = job["status"]["startTime"]
            status["lastScheduleTime"] = max(status.get("lastScheduleTime") or "", started)
        elif outcome == "Complete":
            done = job["status"]["completionTime"]
            status["lastSuccessfulTime"] = max(status.get("lastSuccessfulTime") or "", done)
        if others:
            status["active"] = others
        else:
            status.pop("active", None)
        if status != cron.get("status"):
            cron["status"] = status
            self._store.bump(cron)
        if outcome is not None:
            self._events.event(
                ns,
                cron,
                "Normal",
                "SawCompletedJob",
                f"Saw completed job: {md['name']}, condition: {outcome}",
                "cronjob-controller",
                now,
            )
            self._trim_history(ns, cron)

    def _trim_history(self, ns: str, cron: JSON) -> None:
        spec = cron.get("spec") or {}
        done = sorted(
            (
                (job["status"].get("startTime") or "", job)
                for job in self.owned_jobs(ns, cron)
                if finished(job)
            ),
            key=lambda pair: (pair[0], pair[1]["metadata"]["name"]),
        )
        for outcome, limit_key in (
            ("Complete", "successfulJobsHistoryLimit"),
            ("Failed", "failedJobsHistoryLimit"),
        ):
            mine = [job for _, job in done if finished(job) == outcome]
            limit = int(spec.get(limit_key, 3 if outcome == "Complete" else 1))
            for job in mine[: max(len(mine) - limit, 0)]:
                self._remove("Job", ns, job["metadata"]["name"])

    # ------------------------------------------------------------------ seeding

    def run_past(self, ns: str, cronjob: str, at: float, failure: dict[str, str] | None = None) -> JSON:
        """A scheduled run of `cronjob` that started at the monotonic instant `at` (before now) and
        finished long ago: history for ``make run``. `failure`: annotations that make it fail."""
        cron = self._store.must_get(KINDS["CronJob"], ns, cronjob)
        wall = at + self._store.wall_offset
        job = job_from_cronjob(cron, f"{cronjob}-{int(wall // 60)}", manual=False)
        md = job["metadata"]
        md["annotations"][SCHEDULED_TIME_ANNOTATION] = self._store.ts(at)
        md.update(uid=self._store.uid(), creationTimestamp=self._store.ts(at), generation=1)
        info = KINDS["Job"]
        admission_more.default(info, job, None)
        admission_more.validate(info, md["name"], job, None)
        job["status"] = {}
        self._store.put(info, ns, md["name"], job)
        if failure:
            self.next_run[(ns, cronjob)] = dict(failure)
        t = at
        while not self.sync(ns, job, t):  # each pass finishes the running pods: bounded by backoffLimit
            jsim = self.jobs[(ns, md["name"])]
            active = [(ns, p) for p in jsim.pods if p not in jsim.counted]
            t = max((r.finished for k in active if (r := self._kubelet.pods[k].run) is not None), default=t)
            for key in active:
                self._kubelet.update_pod(key, t)
        return job
