"""Command logic, one module per command (or small family), in domain terms only.

Importing this package imports every module in it, so each `@command`, `@action` and `@service`
is in `handlers.registry` before the dispatcher looks anything up: adding a command is adding a
module here (and its test)."""

from __future__ import annotations

import importlib
import pkgutil

from handlers.registry import ACTIONS, COMMANDS, SERVICES, Parsed, Usage, parse

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ACTIONS", "COMMANDS", "SERVICES", "Parsed", "Usage", "parse"]
