"""The command registry: a command declared in one module is parsed, helped and run; families
of subcommands answer with their members; and README's "how to add a command" example works."""

from __future__ import annotations

import asyncio
import re
import sys
import types
from pathlib import Path

import pytest

from bot.config.catalog import load_catalog
from bot.domain.views import Report
from handlers import COMMANDS, Usage, parse
from handlers.registry import command

ROOT = Path(__file__).resolve().parents[1]
CATALOG = load_catalog()


@pytest.fixture
def scratch_commands():
    """Commands a test declares are removed afterwards, so the real table stays as it was."""
    before = dict(COMMANDS)
    yield
    COMMANDS.clear()
    COMMANDS.update(before)


def _readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### How to add a command") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_is_a_working_command(scratch_commands):
    module = types.ModuleType("handlers.readme_hello")
    sys.modules[module.__name__] = module
    try:
        exec(compile(_readme_example(), "README.md", "exec"), module.__dict__)
        assert parse("hello api-gateway", CATALOG).command == module.Hello("api-gateway")
        assert COMMANDS["hello"].usage == "/payflow hello [service]"
        with pytest.raises(Usage) as info:
            parse("hello nope", CATALOG)
        assert info.value.message.startswith("Unknown service `nope`.") and info.value.command == "hello"
        reply = asyncio.run(module.hello(module.Hello(), None))
        assert isinstance(reply.view, Report) and reply.public
    finally:
        del sys.modules[module.__name__]


def _declare_family() -> None:
    async def run(cmd, ctx):
        raise AssertionError("not run here")

    for name in ("zz", "zz slow", "zz sizes"):
        command(name + " [N]", summary=name, role=None, examples=(), parse=lambda a, c, n=name: (n, a))(run)


def test_the_longest_name_wins_and_a_family_lists_its_members(scratch_commands):
    _declare_family()
    assert parse("zz slow 5", CATALOG).name == "zz slow"
    assert parse("ZZ Sizes", CATALOG).command == ("zz sizes", [])
    assert parse("zz 7", CATALOG).command == ("zz", ["7"])


def test_a_family_without_a_bare_command_says_which_subcommands_exist(scratch_commands):
    async def run(cmd, ctx):
        raise AssertionError("not run here")

    command("yy locked", summary="", role=None, examples=(), parse=lambda a, c: a)(run)
    command("yy unlock <email>", summary="", role=None, examples=(), parse=lambda a, c: a)(run)
    with pytest.raises(Usage) as info:
        parse("yy", CATALOG)
    assert info.value.message == "`yy` needs a subcommand: `yy locked`, `yy unlock`."
    with pytest.raises(Usage) as info:
        parse("yy lockd", CATALOG)
    assert "needs a subcommand" in info.value.message


def test_declaring_a_name_twice_is_an_error_at_import(scratch_commands):
    async def run(cmd, ctx):
        raise AssertionError("not run here")

    with pytest.raises(ValueError, match="declared twice"):
        command("status", summary="", role=None, examples=(), parse=lambda a, c: a)(run)


def test_an_unknown_service_in_a_large_catalog_is_not_answered_with_every_name():
    big = CATALOG.model_copy(
        update={"services": {f"svc-{i:04d}": CATALOG.services["api-gateway"] for i in range(1000)}}
    )
    with pytest.raises(Usage) as info:
        parse("status svc-99999", big)
    assert "`/payflow status` lists them" in info.value.message and len(info.value.message) < 200
