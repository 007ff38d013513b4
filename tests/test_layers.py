"""The house keeps its shape: each folder imports only from the layers below it.

Top to bottom: the process shell, the chat edge, the command handlers, the domain, the gateways,
the configuration, the base helpers. The sandbox simulates the outside world and may lean only on
the base and the configuration; only the shell starts it.
"""

from __future__ import annotations

import ast
from pathlib import Path

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
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


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
