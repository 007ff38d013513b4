"""What every handler gets: the catalog, the gateways and who asked. Nothing from Slack or HTTP."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Catalog
from bot.kube import Kube
from bot.store import Store


@dataclass(frozen=True)
class Context:
    catalog: Catalog
    kube: Kube
    store: Store
    actor: str


class Refused(Exception):
    """The command was understood and allowed but must not run now; `str()` tells the user why."""


def lock_key(service: str) -> str:
    return f"lock:{service}"
