"""Which color of a service is live, read from the traffic object the catalog names."""

from __future__ import annotations

from bot.config import COLORS, Catalog, Color
from bot.kube import IngressState, ServiceState


def live_color(
    catalog: Catalog,
    service: str,
    ingresses: dict[str, IngressState],
    services: dict[str, ServiceState],
) -> Color | None:
    """None when the traffic object is missing or points at neither color: say so, never guess."""
    traffic = catalog.service(service).traffic
    if traffic.kind == "ingress":
        ingress = ingresses.get(traffic.name)
        backend = ingress.backend(traffic.host, traffic.path) if ingress else None
        return next((c for c in COLORS if catalog.k8s_service_name(service, c) == backend), None)
    svc = services.get(traffic.name)
    value = svc.selector.get(traffic.selector_key) if svc else None
    return value if value in COLORS else None  # type: ignore[return-value]


def traffic_label(catalog: Catalog, service: str) -> str:
    traffic = catalog.service(service).traffic
    if traffic.kind == "ingress":
        return f"ingress {traffic.name} {traffic.host or '*'}{traffic.path}"
    return f"Service {traffic.name} selector {traffic.selector_key}"
