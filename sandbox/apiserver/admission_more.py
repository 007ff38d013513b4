"""Admission for Jobs, CronJobs, NetworkPolicies and ConfigMaps: the defaults kube-apiserver fills in (a
Job's generated selector and ``job-name``/``controller-uid`` labels, backoffLimit 6, a
NetworkPolicy's policyTypes) and validation with the real field paths and messages. Kept apart
from ``admission`` (workloads that serve) so each stays one screenful of rules."""

from __future__ import annotations

import json
import re
from typing import Any

from sandbox.apiserver import runs
from sandbox.apiserver.admission import default_pod_spec, validate_pod_spec
from sandbox.apiserver.kinds import JSON, ApiError, KindInfo

CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
_CRON_FIELD = re.compile(r"^[0-9*/,\-A-Za-z?]+$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
CONFIG_MAP_MAX_BYTES = 1024 * 1024
_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def default(info: KindInfo, obj: JSON, current: JSON | None) -> None:
    spec = obj.get("spec")
    if info.kind == "NetworkPolicy":
        if not isinstance(spec, dict):
            spec = obj["spec"] = {}
        spec.setdefault("podSelector", {})
        if not spec.get("policyTypes"):
            spec["policyTypes"] = ["Ingress", *(["Egress"] if spec.get("egress") else [])]
        for direction in ("ingress", "egress"):
            for rule in spec.get(direction) or []:
                for port in rule.get("ports") or [] if isinstance(rule, dict) else []:
                    if isinstance(port, dict):
                        port.setdefault("protocol", "TCP")
    elif info.kind == "Job" and isinstance(spec, dict):
        _default_job_spec(spec)
        if current is None:
            _generate_selector(obj)
    elif info.kind == "CronJob" and isinstance(spec, dict):
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        job_spec = (spec.get("jobTemplate") or {}).get("spec")
        if isinstance(job_spec, dict):
            template = job_spec.get("template")
            if isinstance(template, dict):
                default_pod_spec(template.get("spec"))


def _default_job_spec(spec: JSON) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    spec.setdefault("manualSelector", None)
    if spec["manualSelector"] is None:
        del spec["manualSelector"]
    template = spec.get("template")
    if isinstance(template, dict):
        if not isinstance(template.get("metadata"), dict):
            template["metadata"] = {}
        default_pod_spec(template.get("spec"))


def _generate_selector(job: JSON) -> None:
    """What the job strategy does on create: the pods carry the Job's uid and name as labels,
    the selector is the uid, and a Job without labels of its own takes its pods'."""
    md, spec = job["metadata"], job["spec"]
    template = spec.get("template")
    if not isinstance(template, dict) or spec.get("manualSelector"):
        return
    uid, name = md["uid"], md["name"]
    if spec.get("selector"):
        raise ApiError.invalid(
            KindInfo("Job", "batch/v1", "jobs"),
            name,
            "spec.selector",
            f"Invalid value: {json.dumps(spec['selector'])}: `selector` will be auto-generated",
        )
    labels = template["metadata"].setdefault("labels", {}) or {}
    template["metadata"]["labels"] = labels
    labels.update({CONTROLLER_UID: uid, JOB_NAME: name, "controller-uid": uid, "job-name": name})
    spec["selector"] = {"matchLabels": {CONTROLLER_UID: uid}}
    if not md.get("labels"):
        md["labels"] = dict(labels)


def validate(info: KindInfo, name: str, obj: JSON, current: JSON | None) -> None:
    def invalid(path: str, message: str) -> ApiError:
        return ApiError.invalid(info, name, path, message)

    spec = obj.get("spec")
    if info.kind == "NetworkPolicy":
        _validate_network_policy(spec, invalid)
    elif info.kind == "ConfigMap":
        _validate_config_map(obj, invalid)
    elif info.kind == "Job":
        if not isinstance(spec, dict):
            raise invalid("spec", "Required value")
        _validate_job_spec(spec, "spec", invalid)
        if current is not None:
            for key in ("template", "selector", "completions"):
                if spec.get(key) != current["spec"].get(key):
                    raise invalid(
                        f"spec.{key}", f"Invalid value: {json.dumps(spec.get(key))}: field is immutable"
                    )
    elif info.kind == "CronJob":
        if not isinstance(spec, dict):
            raise invalid("spec", "Required value")
        _validate_schedule(spec.get("schedule"), invalid)
        policy = spec.get("concurrencyPolicy")
        if policy not in ("Allow", "Forbid", "Replace"):
            raise invalid(
                "spec.concurrencyPolicy",
                f'Unsupported value: "{policy}": supported values: "Allow", "Forbid", "Replace"',
            )
        job_template = spec.get("jobTemplate")
        if not isinstance(job_template, dict) or not isinstance(job_template.get("spec"), dict):
            raise invalid("spec.jobTemplate.spec", "Required value")
        _validate_job_spec(job_template["spec"], "spec.jobTemplate.spec", invalid)


def _validate_config_map(obj: JSON, invalid: Any) -> None:
    """Keys as kube-apiserver checks them, string values (what Go's decoder insists on), 1 MiB."""
    total = 0
    for field in ("data", "binaryData"):
        values = obj.get(field) or {}
        if not isinstance(values, dict):
            raise ApiError.bad_request(f'ConfigMap in version "v1" cannot be handled as a ConfigMap: {field}')
        for key, value in values.items():
            if not _CONFIG_KEY.match(key):
                raise invalid(
                    f"{field}[{key}]",
                    f'Invalid value: "{key}": a valid config key must consist of alphanumeric '
                    "characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', "
                    "regex used for validation is '[-._a-zA-Z0-9]+')",
                )
            if not isinstance(value, str):
                raise ApiError.bad_request(
                    f'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal '
                    f"{type(value).__name__} into Go struct field ConfigMap.{field} of type string"
                )
            total += len(key) + len(value.encode())
    if total > CONFIG_MAP_MAX_BYTES:
        raise invalid("", f"Too long: must have at most {CONFIG_MAP_MAX_BYTES} bytes")


def _validate_job_spec(spec: JSON, where: str, invalid: Any) -> None:
    for key in ("backoffLimit", "completions", "parallelism"):
        value = spec.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise invalid(f"{where}.{key}", f"Invalid value: {value!r}: must be greater than or equal to 0")
    template = spec.get("template")
    if not isinstance(template, dict):
        raise invalid(f"{where}.template", "Required value")
    validate_pod_spec(template.get("spec"), f"{where}.template.spec", invalid)
    policy = template["spec"].get("restartPolicy")
    if policy not in ("OnFailure", "Never"):
        raise invalid(
            f"{where}.template.spec.restartPolicy",
            f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
        )
    runs.validate((template.get("metadata") or {}).get("annotations"), f"{where}.template.metadata", invalid)


def _validate_schedule(schedule: Any, invalid: Any) -> None:
    if not isinstance(schedule, str) or not schedule.strip():
        raise invalid("spec.schedule", "Required value")
    text = schedule.strip()
    if text.startswith("@"):
        if text not in _DESCRIPTORS:
            raise invalid("spec.schedule", f'Invalid value: "{schedule}": unrecognized descriptor: {text}')
        return
    fields = text.split()
    if len(fields) != 5:
        raise invalid(
            "spec.schedule",
            f'Invalid value: "{schedule}": expected exactly 5 fields, found {len(fields)}: {text}',
        )
    bad = next((f for f in fields if not _CRON_FIELD.match(f)), None)
    if bad is not None:
        raise invalid("spec.schedule", f'Invalid value: "{schedule}": failed to parse int from {bad}')


def _validate_selector(selector: Any, where: str, invalid: Any) -> None:
    """A LabelSelector's requirements as kube-apiserver checks them (ValidateLabelSelector)."""
    for i, expr in enumerate((selector or {}).get("matchExpressions") or []):
        op, values = expr.get("operator"), expr.get("values") or []
        at = f"{where}.matchExpressions[{i}]"
        if op in ("In", "NotIn") and not values:
            raise invalid(
                f"{at}.values", "Required value: must be specified when `operator` is 'In' or 'NotIn'"
            )
        if op in ("Exists", "DoesNotExist") and values:
            raise invalid(
                f"{at}.values",
                "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise invalid(f"{at}.operator", f'Invalid value: "{op}": not a valid selector operator')


def _validate_network_policy(spec: Any, invalid: Any) -> None:
    if not isinstance(spec, dict) or not isinstance(spec.get("podSelector"), dict):
        raise invalid("spec.podSelector", "Required value")
    _validate_selector(spec["podSelector"], "spec.podSelector", invalid)
    for i, kind in enumerate(spec.get("policyTypes") or []):
        if kind not in ("Ingress", "Egress"):
            raise invalid(
                f"spec.policyTypes[{i}]",
                f'Unsupported value: "{kind}": supported values: "Egress", "Ingress"',
            )
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            if not isinstance(rule, dict):
                raise invalid(f"spec.{direction}[{i}]", "Invalid value: must be an object")
            for j, port in enumerate(rule.get("ports") or []):
                protocol = (port or {}).get("protocol")
                if protocol not in ("TCP", "UDP", "SCTP"):
                    raise invalid(
                        f"spec.{direction}[{i}].ports[{j}].protocol",
                        f'Unsupported value: "{protocol}": supported values: "SCTP", "TCP", "UDP"',
                    )
            for j, peer in enumerate(rule.get(peers) or []):
                if not isinstance(peer, dict) or not peer:
                    raise invalid(
                        f"spec.{direction}[{i}].{peers}[{j}]",
                        "Required value: must specify a peer",
                    )
                for key in ("podSelector", "namespaceSelector"):
                    _validate_selector(peer.get(key), f"spec.{direction}[{i}].{peers}[{j}].{key}", invalid)
