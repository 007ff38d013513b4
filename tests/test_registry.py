"""The command registry: a command declared in one module is parsed, helped and run; families
of subcommands answer with their members; and README's "how to add a command" example works."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import types
from pathlib import Path

import pytest

from bot.config.catalog import load_catalog
from bot.domain.views import Reply, Report
from handlers import COMMANDS, Parsed, Usage, parse
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


# --- words as people type them -------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("ＤＢ ｓｌｏｗ", "db slow"),  # fullwidth (a CJK keyboard)
        ("db\u00a0slow", "db slow"),  # a no-break space pasted from a document
        ("\u200bstatus", "status"),  # a zero-width space pasted with the text
        ("sta\u200btus api-gateway", "status"),
        ("\u200b", "help"),  # nothing visible: as an empty text
        ("", "help"),
        ("\u2060 \ufeff ", "help"),
    ],
)
def test_command_words_are_read_as_typed_not_as_encoded(typed: str, name: str) -> None:
    assert parse(typed, CATALOG).name == name


def test_a_smart_dash_before_an_option_is_the_option() -> None:
    """Slack's (and phones') smart punctuation turns `--` into — or –: every command's options."""
    assert parse("logs api-gateway —lines 50", CATALOG) == parse("logs api-gateway --lines 50", CATALOG)
    deploy = parse("deploy api-gateway v1.2.3 fix –break-glass INC-1 down", CATALOG).command
    assert deploy.break_glass == "INC-1 down" and deploy.reason == "fix"
    assert parse("deploy api-gateway v1.2.3 fix — see PAY-1", CATALOG).command.reason == "fix — see PAY-1"


def test_the_length_limit_counts_what_is_read() -> None:
    assert parse("status " + " " * 480 + "api-gateway", CATALOG).name == "status"
    with pytest.raises(Usage, match="at most 500"):
        parse("status " + "x" * 494, CATALOG)


# --- the table of commands -----------------------------------------------------------------


def test_every_command_says_who_may_run_it_and_its_examples_run() -> None:
    for name, spec in COMMANDS.items():
        assert spec.summary and spec.examples, name
        assert spec.role is not None or name == "help", f"{name} has no role"
        for example in spec.examples:
            assert example.startswith(f"/payflow {name}"), example
            assert parse(example.removeprefix("/payflow "), CATALOG).name == name, example


def test_help_lists_every_command_once_and_a_family_whole() -> None:
    from handlers.help import ordered

    assert sorted(ordered()) == sorted(COMMANDS) and ordered()[0] == "help"
    assert parse("help DB", CATALOG).command.topic == "db"
    assert parse("help users", CATALOG).command.topic == "users"  # a family without a bare command
    with pytest.raises(Usage, match="No command"):
        parse("help dbx", CATALOG)


def test_a_name_is_lowercase_words_and_any_length_is_reachable(scratch_commands) -> None:
    async def run(cmd, ctx):
        raise AssertionError("not run here")

    for bad in ("Zz", "zz  top", "zz\u200btop", "zz-"):
        with pytest.raises(ValueError, match="command name"):
            command(bad, summary="", role=None, examples=(), parse=lambda a, c: a)(run)
    command("zz a b [N]", summary="", role=None, examples=(), parse=lambda a, c: a)(run)
    command("zz a", summary="", role=None, examples=(), parse=lambda a, c: a)(run)
    assert parse("zz a b 3", CATALOG) == Parsed("zz a b", ["3"])
    assert parse("zz a c", CATALOG) == Parsed("zz a", ["c"])


def test_every_module_under_handlers_is_imported() -> None:
    """A module the package import skipped (a folder without __init__.py) would lose its commands
    without a word; one that fails to import stops `import handlers`, and so the bot, at start."""
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "handlers").rglob("*.py")
    }
    assert modules <= set(sys.modules), modules - set(sys.modules)


# --- a command's way to the worker -----------------------------------------------------------


def test_every_example_crosses_to_the_worker_as_it_was_parsed() -> None:
    from bot.chat.dispatch import CommandJob, Invocation
    from bot.gateways.jobs import decode, encode

    for spec in COMMANDS.values():
        for example in spec.examples:
            job = CommandJob(Invocation("U1", "C1", "ops"), parse(example.removeprefix("/payflow "), CATALOG))
            assert decode(encode(job)) == job, example


def test_a_job_naming_a_module_outside_the_bot_is_refused_before_that_module_is_imported() -> None:
    """Importing is running code: `this` prints, `antigravity` opens a browser."""
    import pickle

    from bot.gateways.jobs import decode

    assert "this" not in sys.modules
    with pytest.raises(pickle.UnpicklingError, match="not job data"):
        decode(b"cthis\nd\n.")
    assert "this" not in sys.modules


# --- our own bugs, through the real app: answered, audited, never a traceback ----------------


def test_a_parser_that_crashes_is_answered_and_audited_not_a_traceback(chat, scratch_commands) -> None:
    def broken(args, catalog):
        raise KeyError("internal detail")

    async def run(cmd, ctx):
        raise AssertionError("not run")

    command("zzbroken [x]", summary="", role=None, examples=(), parse=broken)(run)
    answer = chat.run("zzbroken 4111111111111111")
    assert "Something went wrong on our side (ref `" in answer.ack_text, answer.all_text()
    assert "KeyError" not in answer.all_text() and "internal detail" not in answer.all_text()
    [entry] = chat.audit()
    assert (entry.action, entry.outcome) == ("zzbroken", "error") and entry.detail.startswith(
        "internal error ref "
    )
    assert entry.detail.removeprefix("internal error ref ") in answer.ack_text


def test_a_job_naming_a_command_this_version_lacks_is_answered_and_audited(chat, bot) -> None:
    """A web process of a newer release queued it (a rolling deploy): say so, never go silent."""
    from bot.chat.dispatch import CommandJob, Invocation
    from sandbox import demo

    inv = Invocation(
        demo.user("alice").id, demo.OPS_CHANNEL_ID, "ops", response_url=chat.requests.response_url
    )
    bot.call(bot.runtime.dispatcher.execute(CommandJob(inv, Parsed("gone", None))))
    [entry] = chat.audit()
    assert (entry.action, entry.outcome) == ("gone", "error")
    said = json.dumps([c.params for c in chat.slack.responses], ensure_ascii=False)
    assert "`gone` is not a command of this version of the bot" in said


def test_a_view_that_cannot_be_drawn_is_answered_and_audited_as_an_error(chat, scratch_commands) -> None:
    """Drawn before the audit: never an "ok" in the trail followed by silence in Slack."""

    class Undrawable:  # a view no rendering knows
        pass

    async def run(cmd: object, ctx: object) -> Reply:
        return Reply(Undrawable(), public=True)  # type: ignore[arg-type]  # the bug under test

    command("undrawable", summary="", role=None, examples=(), parse=lambda a, c: a)(run)
    answer = chat.run("undrawable")
    assert "Something went wrong on our side" in answer.all_text()
    [entry] = [e for e in chat.audit() if e.action == "undrawable"]
    assert entry.outcome == "error"
