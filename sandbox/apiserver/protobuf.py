"""Kubernetes' protobuf encoding, read: kubectl's typed clients (``kubectl create job
--from=cronjob/...``) POST ``application/vnd.kubernetes.protobuf`` bodies, so the sandbox decodes
them like kube-apiserver does -- for the Job and CronJob messages only, from the field numbers of
k8s.io/api's ``generated.proto``.

A field this table does not know is refused (415 with the field named), never skipped: an object
is stored as sent or not at all.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sandbox.apiserver.kinds import JSON, ApiError

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# message -> field number -> (JSON name, type); a type is a scalar ("string", "int", "bool"),
# "map" (string to string), "quantities" (string to Quantity) or another message; "[...]" repeats.
S, N, B = "string", "int", "bool"
SCHEMA: dict[str, dict[int, tuple[str, str]]] = {
    "Unknown": {
        1: ("typeMeta", "TypeMeta"),
        2: ("raw", "bytes"),
        3: ("contentEncoding", S),
        4: ("contentType", S),
    },
    "TypeMeta": {1: ("apiVersion", S), 2: ("kind", S)},
    "ObjectMeta": {
        1: ("name", S),
        2: ("generateName", S),
        3: ("namespace", S),
        4: ("selfLink", S),
        5: ("uid", S),
        6: ("resourceVersion", S),
        7: ("generation", N),
        8: ("creationTimestamp", "Time"),
        9: ("deletionTimestamp", "Time"),
        10: ("deletionGracePeriodSeconds", N),
        11: ("labels", "map"),
        12: ("annotations", "map"),
        13: ("ownerReferences", "[OwnerReference]"),
        14: ("finalizers", "[string]"),
    },
    "OwnerReference": {
        1: ("kind", S),
        3: ("name", S),
        4: ("uid", S),
        5: ("apiVersion", S),
        6: ("controller", B),
        7: ("blockOwnerDeletion", B),
    },
    "Time": {1: ("seconds", N), 2: ("nanos", N)},
    "LabelSelector": {1: ("matchLabels", "map"), 2: ("matchExpressions", "[LabelSelectorRequirement]")},
    "LabelSelectorRequirement": {1: ("key", S), 2: ("operator", S), 3: ("values", "[string]")},
    "Job": {1: ("metadata", "ObjectMeta"), 2: ("spec", "JobSpec"), 3: ("status", "JobStatus")},
    "CronJob": {1: ("metadata", "ObjectMeta"), 2: ("spec", "CronJobSpec"), 3: ("status", "CronJobStatus")},
    # Go sends a new object's zero counters; the registry replaces a created object's status anyway
    "JobStatus": {
        2: ("startTime", "Time"),
        3: ("completionTime", "Time"),
        4: ("active", N),
        5: ("succeeded", N),
        6: ("failed", N),
        7: ("completedIndexes", S),
        9: ("ready", N),
        11: ("terminating", N),
    },
    "CronJobStatus": {4: ("lastScheduleTime", "Time"), 5: ("lastSuccessfulTime", "Time")},
    "JobSpec": {
        1: ("parallelism", N),
        2: ("completions", N),
        3: ("activeDeadlineSeconds", N),
        4: ("selector", "LabelSelector"),
        5: ("manualSelector", B),
        6: ("template", "PodTemplateSpec"),
        7: ("backoffLimit", N),
        8: ("ttlSecondsAfterFinished", N),
        9: ("completionMode", S),
        10: ("suspend", B),
        12: ("backoffLimitPerIndex", N),
        13: ("maxFailedIndexes", N),
        14: ("podReplacementPolicy", S),
        15: ("managedBy", S),
    },
    "CronJobSpec": {
        1: ("schedule", S),
        2: ("startingDeadlineSeconds", N),
        3: ("concurrencyPolicy", S),
        4: ("suspend", B),
        5: ("jobTemplate", "JobTemplateSpec"),
        6: ("successfulJobsHistoryLimit", N),
        7: ("failedJobsHistoryLimit", N),
        8: ("timeZone", S),
    },
    "JobTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "JobSpec")},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec")},
    "PodSpec": {
        2: ("containers", "[Container]"),
        3: ("restartPolicy", S),
        4: ("terminationGracePeriodSeconds", N),
        5: ("activeDeadlineSeconds", N),
        6: ("dnsPolicy", S),
        7: ("nodeSelector", "map"),
        8: ("serviceAccountName", S),
        9: ("serviceAccount", S),
        10: ("nodeName", S),
        11: ("hostNetwork", B),
        12: ("hostPID", B),
        13: ("hostIPC", B),
        14: ("securityContext", "PodSecurityContext"),
        15: ("imagePullSecrets", "[LocalObjectReference]"),
        16: ("hostname", S),
        17: ("subdomain", S),
        19: ("schedulerName", S),
        20: ("initContainers", "[Container]"),
        21: ("automountServiceAccountToken", B),
        24: ("priorityClassName", S),
        25: ("priority", N),
        30: ("enableServiceLinks", B),
        31: ("preemptionPolicy", S),
    },
    "PodSecurityContext": {
        2: ("runAsUser", N),
        3: ("runAsNonRoot", B),
        4: ("supplementalGroups", "[int]"),
        5: ("fsGroup", N),
        6: ("runAsGroup", N),
        9: ("fsGroupChangePolicy", S),
    },
    "LocalObjectReference": {1: ("name", S)},
    "Container": {
        1: ("name", S),
        2: ("image", S),
        3: ("command", "[string]"),
        4: ("args", "[string]"),
        5: ("workingDir", S),
        6: ("ports", "[ContainerPort]"),
        7: ("env", "[EnvVar]"),
        8: ("resources", "ResourceRequirements"),
        13: ("terminationMessagePath", S),
        14: ("imagePullPolicy", S),
        15: ("securityContext", "SecurityContext"),
        16: ("stdin", B),
        17: ("stdinOnce", B),
        18: ("tty", B),
        20: ("terminationMessagePolicy", S),
    },
    "ContainerPort": {
        1: ("name", S),
        2: ("hostPort", N),
        3: ("containerPort", N),
        4: ("protocol", S),
        5: ("hostIP", S),
    },
    "EnvVar": {1: ("name", S), 2: ("value", S), 3: ("valueFrom", "EnvVarSource")},
    "EnvVarSource": {1: ("fieldRef", "ObjectFieldSelector")},
    "ObjectFieldSelector": {1: ("apiVersion", S), 2: ("fieldPath", S)},
    "ResourceRequirements": {1: ("limits", "quantities"), 2: ("requests", "quantities")},
    "Quantity": {1: ("string", S)},
    "SecurityContext": {
        2: ("privileged", B),
        4: ("runAsUser", N),
        5: ("runAsNonRoot", B),
        6: ("readOnlyRootFilesystem", B),
        7: ("allowPrivilegeEscalation", B),
        8: ("runAsGroup", N),
    },
    "MapEntry": {1: ("key", S), 2: ("value", S)},
    "QuantityEntry": {1: ("key", S), 2: ("value", "Quantity")},
}


def refused(message: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", f"{message}; send application/json instead")


def decode_object(body: bytes) -> JSON:
    """The JSON object a ``k8s\\0``-framed ``runtime.Unknown`` carries (Job or CronJob)."""
    if not body.startswith(MAGIC):
        raise refused("the protobuf body does not start with the k8s\\x00 envelope")
    envelope = _message(body[len(MAGIC) :], "Unknown")
    type_meta = envelope.get("typeMeta") or {}
    kind = type_meta.get("kind")
    if kind not in ("Job", "CronJob"):
        raise refused(f"the sandbox decodes protobuf only for Job and CronJob, not {kind!r}")
    if envelope.get("contentEncoding"):
        raise refused(f"content encoding {envelope['contentEncoding']!r} is not supported")
    obj = _message(envelope.get("raw") or b"", kind)
    return {"apiVersion": type_meta.get("apiVersion"), "kind": kind, **obj}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise refused("truncated protobuf varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes, message: str) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise refused(f"truncated protobuf field {number} of {message}")
            out.append((number, data[pos : pos + length]))
            pos += length
        else:
            raise refused(
                f"protobuf wire type {wire} (field {number} of {message}) is not used by these kinds"
            )
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _scalar(kind: str, value: int | bytes, where: str) -> Any:
    if kind == "string":
        if not isinstance(value, bytes):
            raise refused(f"{where}: expected a string")
        return value.decode()
    if kind == "bytes":
        return value
    if isinstance(value, bytes):
        raise refused(f"{where}: expected a number")
    return bool(value) if kind == "bool" else _signed(value)


def _message(data: bytes, message: str) -> JSON:
    schema = SCHEMA[message]
    out: JSON = {}
    for number, raw in _fields(data, message):
        if number not in schema:
            raise refused(f"field {number} of {message} is not known to the sandbox")
        name, kind = schema[number]
        where = f"{message}.{name}"
        repeated = kind.startswith("[")
        kind = kind.strip("[]")
        if kind in ("map", "quantities"):
            if not isinstance(raw, bytes):
                raise refused(f"{where}: expected a map entry")
            entry = _message(raw, "MapEntry" if kind == "map" else "QuantityEntry")
            value = entry.get("value", "" if kind == "map" else {})
            out.setdefault(name, {})[entry.get("key", "")] = (
                value.get("string", "") if kind != "map" else value
            )
            continue
        if kind in SCHEMA:
            if not isinstance(raw, bytes):
                raise refused(f"{where}: expected a message")
            value = _time(_message(raw, kind)) if kind == "Time" else _message(raw, kind)
        elif kind == "int" and repeated and isinstance(raw, bytes):  # packed
            values, pos = [], 0
            while pos < len(raw):
                item, pos = _varint(raw, pos)
                values.append(_signed(item))
            out.setdefault(name, []).extend(values)
            continue
        else:
            value = _scalar(kind, raw, where)
        if repeated:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


def _time(value: JSON) -> str | None:
    """metav1.Time: the zero time is JSON null, as Go encodes it."""
    seconds = int(value.get("seconds") or 0)
    if seconds < 0 or (not seconds and not value.get("nanos")):  # Go's zero time is year 1
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
