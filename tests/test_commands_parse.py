"""The grammar on its own: what each text becomes, and what the user is told when it is wrong."""

from __future__ import annotations

import pytest

from bot.config.catalog import load_catalog
from handlers import COMMANDS, Usage, parse
from handlers.audit import Audit
from handlers.help import Help
from handlers.scale import Scale
from handlers.status import Status

CATALOG = load_catalog()


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("", Help()),
        ("help", Help()),
        ("HELP Scale", Help("scale")),
        ("status", Status()),
        ("  status   wallet-service ", Status("wallet-service")),
        ("scale api-gateway 5", Scale("api-gateway", 5)),
        ("scale api-gateway 20", Scale("api-gateway", 20)),
        ("audit", Audit()),
        ("audit 20", Audit(None, 20)),
        ("audit auth-service", Audit("auth-service")),
        ("audit auth-service 3", Audit("auth-service", 3)),
    ],
)
def test_parses(text, command):
    assert parse(text, CATALOG).command == command


@pytest.mark.parametrize(
    ("text", "message", "usage_of"),
    [
        ("stauts", "Unknown command `stauts`. Did you mean `status`?", None),
        ("help promote", "No command `promote`.", "help"),
        ("status nope extra", "Too many arguments: `extra` is not understood here.", "status"),
        ("scale api-gateway 21", "21 replicas is out of bounds: api-gateway takes 2–20.", "scale"),
        ("scale api-gateway 0", "0 replicas is out of bounds", "scale"),
        ("scale api-gateway 1.5", "Replicas must be a whole number, got `1.5`.", "scale"),
        ("scale api-gateway 9999999", "Replicas must be a whole number", "scale"),
        ("audit api-gateway 2 3", "Too many arguments", "audit"),
        ("audit 0", "N must be between 1 and 50, got 0.", "audit"),
        ("status " + "a" * 200, "Unknown service `" + "a" * 39 + "…`.", "status"),
    ],
)
def test_refuses_with_a_message(text, message, usage_of):
    with pytest.raises(Usage) as info:
        parse(text, CATALOG)
    assert message in info.value.message
    assert info.value.command == usage_of


def test_every_command_has_usage_examples_and_a_role_except_help():
    for spec in COMMANDS.values():
        assert spec.usage.startswith("/payflow ") and spec.examples
        assert (spec.role is None) == (spec.name == "help")
