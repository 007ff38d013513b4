"""Pods that run to completion (``restartPolicy`` Never or OnFailure, as Jobs make them): what
the container does is read from the pod's annotations, so a test or a demo chooses it by writing
the pod template, never by reaching into the sandbox:

- ``sandbox.payflow.io/runtime-seconds``: how long the container runs (default 1.5)
- ``sandbox.payflow.io/exit-code``: its exit code (default 0; non-zero fails the pod)
- ``sandbox.payflow.io/log``: the lines it prints, newline-separated, spread over its runtime
- ``sandbox.payflow.io/program``: a built-in program (``sandbox.apiserver.programs``) that
  writes its own lines and exit code, e.g. ``postgres-backup``; ``exit-code`` and ``log`` given
  next to it win (that is how the admin endpoint makes the next run of a CronJob fail)

Phases as the kubelet reports them: Pending (ContainerCreating) until the container starts,
Running, then Succeeded or Failed with the container's ``terminated`` state.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sandbox.apiserver.kinds import JSON, ApiError

PREFIX = "sandbox.payflow.io/"
RUNTIME = PREFIX + "runtime-seconds"
EXIT_CODE = PREFIX + "exit-code"
LOG = PREFIX + "log"
PROGRAM = PREFIX + "program"
DEFAULT_RUNTIME_SECONDS = 1.5
MAX_RUNTIME_SECONDS = 3600.0
MAX_LOG_BYTES = 64 * 1024
PROGRAMS = ("postgres-backup", "restore-drill")
NODE_IP = "10.0.0.10"


@dataclass
class Run:
    """What one container run does; ``job_annotations`` are what the program writes onto its
    own Job when it succeeds (the backup script records its dump's size that way)."""

    seconds: float = DEFAULT_RUNTIME_SECONDS
    exit_code: int = 0
    lines: list[str] = field(default_factory=list)
    job_annotations: dict[str, str] = field(default_factory=dict)
    started: float = 0.0

    @property
    def finished(self) -> float:
        return self.started + self.seconds

    def timed_lines(self) -> list[tuple[float, str]]:
        """The lines at the moments they are printed: the first at start, the last at exit."""
        n = len(self.lines)
        step = self.seconds / (n - 1) if n > 1 else 0.0
        return [(self.started + i * step, line) for i, line in enumerate(self.lines)]


def runs_to_completion(pod: JSON) -> bool:
    return (pod.get("spec") or {}).get("restartPolicy") in ("Never", "OnFailure")


def validate(
    annotations: Mapping[str, str] | None, where: str, invalid: Callable[[str, str], ApiError]
) -> None:
    """Refuse annotations the run could not honour, with the field path, before anything is stored."""
    annotations = annotations or {}
    path = f"{where}.annotations"
    if RUNTIME in annotations:
        try:
            seconds = float(annotations[RUNTIME])
        except (TypeError, ValueError):
            seconds = math.nan
        if not 0 <= seconds <= MAX_RUNTIME_SECONDS:
            raise invalid(
                f"{path}[{RUNTIME}]",
                f'Invalid value: "{annotations[RUNTIME]}": '
                f"must be seconds between 0 and {MAX_RUNTIME_SECONDS:g}",
            )
    if EXIT_CODE in annotations:
        value = str(annotations[EXIT_CODE])
        if not value.isdigit() or int(value) > 255:
            raise invalid(f"{path}[{EXIT_CODE}]", f'Invalid value: "{value}": must be an exit code 0-255')
    if LOG in annotations and len(str(annotations[LOG]).encode()) > MAX_LOG_BYTES:
        raise invalid(f"{path}[{LOG}]", f"Too long: must have at most {MAX_LOG_BYTES} bytes")
    if PROGRAM in annotations and annotations[PROGRAM] not in PROGRAMS:
        supported = ", ".join(f'"{p}"' for p in PROGRAMS)
        raise invalid(
            f"{path}[{PROGRAM}]",
            f'Unsupported value: "{annotations[PROGRAM]}": supported values: {supported}',
        )


def from_annotations(annotations: Mapping[str, str] | None, base: Run | None = None) -> Run:
    """The run the annotations describe, over ``base`` (a program's run) when given."""
    annotations = annotations or {}
    run = base or Run()
    if RUNTIME in annotations:
        run.seconds = float(annotations[RUNTIME])
    if EXIT_CODE in annotations:
        run.exit_code = int(annotations[EXIT_CODE])
        if run.exit_code:
            run.job_annotations = {}  # a failed script annotates nothing
    if LOG in annotations:
        lines = str(annotations[LOG]).splitlines()
        run.lines = lines if base is None or not run.exit_code else [*run.lines[:1], *lines]
    return run


def _container_id(pod: JSON, name: str) -> str:
    digest = hashlib.sha256(f"{pod['metadata']['uid']}/{name}/0".encode()).hexdigest()
    return f"containerd://{digest}"


def status(ts: Callable[[float], str], pod: JSON, created: float, ip: str, run: Run, now: float) -> JSON:
    """The pod's status at ``now``; the first container runs the script, the others exit 0 with it."""
    phase = "Pending" if now < run.started else "Running" if now < run.finished else None
    if phase is None:
        phase = "Failed" if run.exit_code else "Succeeded"
    statuses = []
    for i, c in enumerate((pod.get("spec") or {}).get("containers") or []):
        name, image = c["name"], str(c.get("image") or "")
        digest = hashlib.sha256(image.encode()).hexdigest()
        cs: JSON = {
            "name": name,
            "image": image,
            "imageID": f"docker.io/{image.split('@')[0]}@sha256:{digest}",
            "containerID": _container_id(pod, name),
            "ready": phase == "Running",
            "started": phase == "Running",
            "restartCount": 0,
            "lastState": {},
        }
        if phase == "Pending":
            cs.update(imageID="", started=False)
            cs.pop("containerID")
            cs["state"] = {"waiting": {"reason": "ContainerCreating"}}
        elif phase == "Running":
            cs["state"] = {"running": {"startedAt": ts(run.started)}}
        else:
            code = run.exit_code if i == 0 else 0
            cs["state"] = {
                "terminated": {
                    "exitCode": code,
                    "reason": "Error" if code else "Completed",
                    "startedAt": ts(run.started),
                    "finishedAt": ts(run.finished),
                    "containerID": _container_id(pod, name),
                }
            }
        statuses.append(cs)
    names = " ".join(s["name"] for s in statuses)

    def cond(kind: str, ok: bool, since: float, reason: str = "") -> JSON:
        out: JSON = {
            "type": kind,
            "status": "True" if ok else "False",
            "lastProbeTime": None,
            "lastTransitionTime": ts(since),
        }
        if reason:
            out["reason"] = reason
            if reason == "ContainersNotReady":
                out["message"] = f"containers with unready status: [{names}]"
        return out

    if phase == "Pending":
        ready = [cond("ContainersReady", False, created, "ContainersNotReady")]
        ready.append(cond("Ready", False, created, "ContainersNotReady"))
    elif phase == "Running":
        ready = [cond("ContainersReady", True, run.started), cond("Ready", True, run.started)]
    else:
        ready = [cond("ContainersReady", False, run.finished, "PodCompleted")]
        ready.append(cond("Ready", False, run.finished, "PodCompleted"))
    return {
        "phase": phase,
        "conditions": [
            cond("PodReadyToStartContainers", phase != "Pending", created),
            cond("Initialized", True, created),
            *ready,
            cond("PodScheduled", True, created),
        ],
        "hostIP": NODE_IP,
        "hostIPs": [{"ip": NODE_IP}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": ts(created),
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    }
