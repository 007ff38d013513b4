"""Backups in the cluster's terms (issue 14): the Job `kubectl create job --from=cronjob/...` makes,
how a Job ended and why, the restore drill's verdict, and how old the last good backup is.

Pure functions over the raw JSON the Kubernetes gateway returns, so they are tested without a
cluster and the handlers stay short.
"""

from __future__ import annotations

import copy
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]
MANUAL_ANNOTATION = "cronjob.kubernetes.io/instantiate"
LOCATION_ANNOTATION = "backup.payflow.io/location"  # where the sandbox's and PayFlow's script put the dump
MAX_NAME = 63  # a Job's name is also its pods' `job-name` label value
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's rand.String: no vowels, no 0/1/3
_DRILL_LINE = re.compile(r"^table=(?P<table>\S+) restored=(?P<restored>\d+) production=(?P<production>\d+)$")


def manual_job_name(cronjob: str) -> str:
    suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
    return f"{cronjob[: MAX_NAME - len(suffix) - 8]}-manual-{suffix}"


def job_from_cronjob(cronjob: Mapping[str, Any], name: str) -> JSON:
    """What `kubectl create job NAME --from=cronjob/CRON` sends: the job template's labels and
    annotations (plus `cronjob.kubernetes.io/instantiate: manual`) and spec, owned by the CronJob
    as its controller, so the CronJob's history and status count it like a scheduled run."""
    template = cronjob["spec"]["jobTemplate"]
    tmeta = template.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    annotations[MANUAL_ANNOTATION] = "manual"
    cmeta = cronjob["metadata"]
    owner = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "name": cmeta["name"],
        "uid": cmeta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "labels": dict(tmeta.get("labels") or {}),
            "annotations": annotations,
            "ownerReferences": [owner],
        },
        "spec": copy.deepcopy(template["spec"]),
    }


def when(stamp: str | None) -> datetime | None:
    """An RFC 3339 time as the API server writes it."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def owned_by(job: Mapping[str, Any], cronjob: Mapping[str, Any]) -> bool:
    uid = cronjob["metadata"].get("uid")
    refs = (job.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("kind") == "CronJob" and r.get("controller") and r.get("uid") == uid for r in refs)


def condition(job: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Job's terminal condition (Complete or Failed) once it has one."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return dict(cond)
    return None


def finished(job: Mapping[str, Any]) -> str | None:
    cond = condition(job)
    return str(cond["type"]) if cond else None


@dataclass(frozen=True)
class Run:
    """One Job of a CronJob, as `/payflow backups` shows it."""

    name: str
    state: str  # "Complete", "Failed" or "Running"
    started: datetime | None
    finished: datetime | None
    size_bytes: int | None
    location: str
    reason: str  # the Failed condition's reason and message

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return (self.finished - self.started).total_seconds()


def run_of(job: Mapping[str, Any], size_annotation: str) -> Run:
    md, status = job.get("metadata") or {}, job.get("status") or {}
    annotations = md.get("annotations") or {}
    cond = condition(job)
    state = str(cond["type"]) if cond else "Running"
    size = annotations.get(size_annotation)
    ended = when(status.get("completionTime")) or (when(cond.get("lastTransitionTime")) if cond else None)
    reason = ""
    if state == "Failed" and cond:
        reason = ": ".join(x for x in (cond.get("reason"), cond.get("message")) if x)
    return Run(
        name=str(md.get("name", "?")),
        state=state,
        started=when(status.get("startTime")) or when(md.get("creationTimestamp")),
        finished=ended,
        size_bytes=int(size) if isinstance(size, str) and size.isdigit() else None,
        location=str(annotations.get(LOCATION_ANNOTATION, "")),
        reason=reason,
    )


def history(jobs: Iterable[Mapping[str, Any]], cronjob: Mapping[str, Any], size_annotation: str) -> list[Run]:
    """The CronJob's Jobs, newest start first."""
    runs = [run_of(j, size_annotation) for j in jobs if owned_by(j, cronjob)]
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(runs, key=lambda r: r.started or epoch, reverse=True)


@dataclass(frozen=True)
class PodEnd:
    """Why a Job's pod stopped: what the kubelet reports."""

    name: str
    phase: str
    exit_code: int | None
    reason: str  # the container's terminated reason (Error, OOMKilled, …) or waiting reason

    def describe(self) -> str:
        parts = [f"pod `{self.name}` {self.phase}"]
        if self.exit_code is not None:
            parts.append(f"exit code {self.exit_code}")
        if self.reason:
            parts.append(self.reason)
        return ", ".join(parts)


def last_pod(pods: Iterable[Mapping[str, Any]]) -> PodEnd | None:
    """The newest pod (the one whose end decided the Job) and how it ended."""
    newest = max(
        pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp", "")), default=None
    )
    if newest is None:
        return None
    status = newest.get("status") or {}
    exit_code, reason = None, ""
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "terminated" in state:
            exit_code = int(state["terminated"].get("exitCode", 0))
            reason = str(state["terminated"].get("reason", ""))
            if exit_code:
                break
        elif "waiting" in state:
            reason = str(state["waiting"].get("reason", ""))
    return PodEnd(str(newest["metadata"]["name"]), str(status.get("phase", "Unknown")), exit_code, reason)


@dataclass(frozen=True)
class DrillRow:
    table: str
    restored: int
    production: int

    @property
    def matches(self) -> bool:
        return self.restored == self.production


def drill_rows(log: str) -> list[DrillRow]:
    """The drill's `table=<t> restored=<n> production=<n>` lines, in the order printed."""
    rows = []
    for line in log.splitlines():
        m = _DRILL_LINE.match(line.strip())
        if m:
            rows.append(DrillRow(m["table"], int(m["restored"]), int(m["production"])))
    return rows


def size_text(n: int | None) -> str:
    if n is None:
        return "size not recorded"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def age_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.1f} d"
