"""The code stays ruff-clean and mypy-clean: CI runs only the test command, so style and types are
checked here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_and_format():
    check = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy():
    """Everything under bot/, handlers/ and sandbox/ as it is now (pyproject's [tool.mypy] names the
    packages, not files): strict for the domain, the gateways, base and config, normal elsewhere."""
    run = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    # Every module is checked: an `exclude` would drop files without a word. mypy also counts each
    # folder without Python (sandbox/sql) as a namespace package, so the count is exact with them.
    folders = [ROOT / f for f in ("bot", "handlers", "sandbox")]
    modules = sum(1 for f in folders for _ in f.rglob("*.py"))
    empty = sum(
        1
        for f in folders
        for d in [f, *f.rglob("*")]
        if d.is_dir() and d.name != "__pycache__" and not any(d.glob("*.py"))
    )
    checked = re.search(r"no issues found in (\d+) source files", run.stdout)
    assert checked is not None and int(checked.group(1)) == modules + empty, (modules, empty, run.stdout)


def test_every_type_ignore_names_its_error_and_says_why():
    """In what mypy checks: a bare `# type: ignore` hides every error on its line, now and later;
    a reason lets the next reader judge whether it still holds."""
    unexplained = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("bot", "handlers", "sandbox")
        for path in (ROOT / folder).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "type: ignore" in line and not re.search(r"type: ignore\[[\w\-, ]+\]\s*#\s*\S", line)
    ]
    assert not unexplained, unexplained
