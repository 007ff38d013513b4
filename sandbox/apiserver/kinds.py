"""The API's vocabulary: the kinds the sandbox serves and the ``Status`` errors it answers with.

Every other room imports from here, and this module imports from none of them, so error messages
and URL routing stay word-for-word what kube-apiserver says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True)
class KindInfo:
    """Static facts about a kind that error messages and URL routing need."""

    kind: str
    api_version: str
    plural: str
    namespaced: bool = True
    has_status: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def resource(self) -> str:
        """The ``deployments.apps`` spelling kube-apiserver uses in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


KINDS: dict[str, KindInfo] = {
    k.kind: k
    for k in (
        KindInfo("Deployment", "apps/v1", "deployments"),
        KindInfo("Service", "v1", "services"),
        KindInfo("Ingress", "networking.k8s.io/v1", "ingresses"),
        KindInfo("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies", has_status=False),
        KindInfo("Job", "batch/v1", "jobs"),
        KindInfo("CronJob", "batch/v1", "cronjobs"),
        KindInfo("Pod", "v1", "pods"),
        KindInfo("ConfigMap", "v1", "configmaps", has_status=False),
        KindInfo("Event", "v1", "events", has_status=False),
        KindInfo("Namespace", "v1", "namespaces", namespaced=False),
    )
}


def kind_info(kind: str) -> KindInfo:
    """Accept ``Deployment``, ``deployment`` or ``deployments`` so callers need not care."""
    if kind in KINDS:
        return KINDS[kind]
    low = kind.lower()
    for info in KINDS.values():
        if low in (info.kind.lower(), info.plural):
            return info
    raise ApiError(404, "NotFound", f"the server doesn't have a resource type {kind!r}")


class ApiError(Exception):
    """An error that maps 1:1 onto a Kubernetes ``Status`` failure body."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> JSON:
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body

    def __repr__(self) -> str:
        return f"ApiError({self.code}, {self.reason!r}, {self.message!r})"

    @classmethod
    def not_found(cls, info: KindInfo, name: str) -> ApiError:
        return cls(
            404,
            "NotFound",
            f'{info.resource} "{name}" not found',
            {"name": name, "group": info.group, "kind": info.plural},
        )

    @classmethod
    def conflict(cls, info: KindInfo, name: str) -> ApiError:
        return cls(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {info.resource} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            {"name": name, "group": info.group, "kind": info.plural},
        )

    @classmethod
    def invalid(cls, info: KindInfo, name: str, field_path: str, message: str) -> ApiError:
        return cls(
            422,
            "Invalid",
            f'{info.qualified_kind} "{name}" is invalid: {field_path}: {message}',
            {
                "name": name,
                "group": info.group,
                "kind": info.kind,
                "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field_path}],
            },
        )

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, "BadRequest", message)


def meta(obj: JSON) -> JSON:
    """The object's metadata, created empty when missing or not a mapping."""
    value = obj.get("metadata")
    if not isinstance(value, dict):
        value = obj["metadata"] = {}
    return value


def no_subresource(info: KindInfo, sub: str | None) -> ApiError:
    return ApiError(
        404, "NotFound", f"the server could not find the requested resource ({info.plural}/{sub})"
    )
