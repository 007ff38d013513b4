"""Which color of a service is live, read from the traffic object the catalog names."""

from __future__ import annotations

from bot.config.catalog import COLORS, Catalog, Color
from bot.gateways.kube import Kube
from bot.gateways.kube_objects import IngressState, Route, ServiceState


def color_named(catalog: Catalog, service: str, value: str | None) -> Color | None:
    """The color a traffic object's value names: a Service name for an ingress backend, the
    selector value for a selector Service; None when it names neither."""
    return next((c for c in COLORS if traffic_value(catalog, service, c) == value), None)


def traffic_value(catalog: Catalog, service: str, color: Color) -> str:
    """What the traffic object must say for `color` to be live."""
    if catalog.service(service).traffic.kind == "service":
        return color
    return catalog.k8s_service_name(service, color)


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
        return color_named(catalog, service, ingress.backend(traffic.host, traffic.path) if ingress else None)
    svc = services.get(traffic.name)
    return color_named(catalog, service, svc.selector.get(traffic.selector_key) if svc else None)


def traffic_label(catalog: Catalog, service: str) -> str:
    traffic = catalog.service(service).traffic
    if traffic.kind == "ingress":
        return f"ingress {traffic.name} {traffic.host or '*'}{traffic.path}"
    return f"Service {traffic.name} selector {traffic.selector_key}"


async def traffic_route(catalog: Catalog, kube: Kube, service: str) -> Route:
    """This service's own route in its traffic object: what a switch tests and replaces."""
    traffic = catalog.service(service).traffic
    if traffic.kind == "ingress":
        return await kube.ingress_route(traffic.name, traffic.host, traffic.path)
    return await kube.service_route(traffic.name, traffic.selector_key)
