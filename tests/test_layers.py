"""The house keeps its shape: each folder imports only from the layers below it.

Top to bottom: the process shell, the chat edge, the command handlers, the domain, the gateways,
the configuration, the base helpers. The sandbox simulates the outside world and may lean only on
the base and the configuration; only the shell starts it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["bot.shell", "bot.chat", "handlers", "bot.domain", "bot.gateways", "bot.config", "bot.base"]
SANDBOX_MAY_USE = ("bot.base", "bot.config")
MAX_LINES = 600


def _layer(module: str) -> int | None:
    for n, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return n
    return None


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> list[tuple[int, str]]:
    return _imports_in(path.read_text(), _module_of(path), path.name == "__init__.py")


def _imports_in(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module a source imports, wherever it does (a function body too): `import x`,
    `from x import y` (as x and x.y: `from bot import shell` imports bot.shell), relative imports
    resolved against the module, and `importlib.import_module` / `__import__` of a literal name."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            where = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, where))
            found += [(node.lineno, f"{where}.{a.name}") for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called in {"import_module", "__import__"} and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


@pytest.mark.parametrize(
    "source",
    [
        "from bot.shell import cli",
        "from bot import shell",
        "from ..shell import cli",
        "from ...bot.shell import cli",  # from the package's parent: bot.chat → bot → (root)
        "import importlib\nimportlib.import_module('bot.shell.cli')",
        "from importlib import import_module\nimport_module('bot.shell')",
        "__import__('bot.shell.runtime')",
        "def later():\n    from bot.shell import runtime",
    ],
)
def test_the_checker_sees_every_way_to_import(source: str) -> None:
    imported = [target for _, target in _imports_in(source, "bot.chat.dispatch", False)]
    assert any(t == "bot.shell" or t.startswith("bot.shell.") for t in imported), imported


def _sources(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def test_every_module_of_the_bot_is_in_a_layer() -> None:
    loose = [_module_of(p) for p in _sources("bot", "handlers") if _layer(_module_of(p)) is None]
    assert loose == ["bot"], f"modules outside every layer: {loose}"


def test_imports_only_go_downward() -> None:
    upward = []
    for path in _sources("bot", "handlers"):
        here = _layer(_module_of(path))
        if here is None:
            continue
        for line, target in _imports(path):
            there = _layer(target)
            if there is not None and there < here:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
            if target.split(".")[0] == "sandbox" and LAYERS[here] != "bot.shell":
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target} (only the shell starts it)")
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


def test_the_sandbox_leans_only_on_the_base_and_the_configuration() -> None:
    leaks = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in _sources("sandbox")
        for line, target in _imports(path)
        if target.split(".")[0] in {"bot", "handlers"} and not target.startswith(SANDBOX_MAY_USE)
    ]
    assert not leaks, "\n".join(leaks)


def test_no_module_outside_the_tests_is_over_600_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _sources("bot", "handlers", "sandbox", "bench")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these by what they hold: {long}"
