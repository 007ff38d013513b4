"""How long `make run` takes to reach its prompt, to each demo data store being ready, and to
exit once asked: the data stores start in the background, so the prompt must not wait for them.

    python bench/console_start.py [--runs 3] [--root DIR]

`--root` runs another checkout's console (e.g. main, for a before/after table)."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT_LINE = "PayFlow console —"
READY = {"PostgreSQL": "PostgreSQL ready", "Redis": "PayFlow's Redis ready", "RabbitMQ": "RabbitMQ ready"}
DEADLINE = 120.0


def one_run(root: Path) -> dict[str, float]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "REDIS_", "KUBECONFIG", "PAYFLOW_"))
    }
    env["PYTHONPATH"] = str(root)
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.shell.cli", "console", "--sandbox"],
        cwd=root,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    seen: dict[str, float] = {}
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.monotonic() - began
            if PROMPT_LINE in line:
                seen.setdefault("prompt", now)
            for name, text in READY.items():
                if text in line:
                    seen.setdefault(name, now)
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + DEADLINE
    wanted = {"prompt", *READY}
    while time.monotonic() < deadline and not wanted <= seen.keys() and proc.poll() is None:
        time.sleep(0.05)
        if "prompt" in seen and time.monotonic() - began > seen["prompt"] + 30:
            break  # a store that never says ready (not installed, or an older checkout)
    quit_at = time.monotonic()
    proc.stdin.write("/quit\n")
    proc.stdin.close()
    proc.wait(timeout=DEADLINE)
    seen["exit"] = time.monotonic() - quit_at
    done.wait(5)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args()
    runs = [one_run(args.root.resolve()) for _ in range(args.runs)]
    print(f"console --sandbox in {args.root.resolve()}, {args.runs} runs (seconds; median, max)")
    print(f"{'milestone':<28}{'median':>8}{'max':>8}")
    for key, label in (
        ("prompt", "prompt shown"),
        ("PostgreSQL", "PostgreSQL ready"),
        ("Redis", "PayFlow's Redis ready"),
        ("RabbitMQ", "RabbitMQ ready"),
        ("exit", "exit after /quit"),
    ):
        values = [r[key] for r in runs if key in r]
        if not values:
            print(f"{label:<28}{'—':>8}{'—':>8}")
        else:
            print(f"{label:<28}{statistics.median(values):>8.2f}{max(values):>8.2f}")


if __name__ == "__main__":
    main()
