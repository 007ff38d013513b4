"""The redactor against its goals: zero leaks, zero false positives, fast enough for the logs of
1,000 lines × many pods, and linear on adversarial input.

Figures for bot/base/redact/ on the corpus (tests/support/redact_corpus.py), throughput on a
realistic 10-pod log excerpt (what `/payflow logs` redacts), and the time for 1 MB of each input
built to make a backtracking regex blow up. When detect-secrets is importable, the same corpus
through it (its default plugins and filters, scanning a file as its CLI does) for comparison; it
only detects, so a line it finds anything on counts as not leaked, which flatters it.

    .venv/bin/python bench/redact.py [--pods 10] [--lines 1000]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.base.redact import redact, redact_lines
from tests.support.redact_corpus import HARMLESS, PEM_BODY, SENSITIVE

MB = 1 << 20


def realistic_log(pods: int, lines: int, seed: int = 7) -> list[str]:
    """What the logs handler redacts: lines labelled by pod, ~1 % of them sensitive."""
    rand = random.Random(seed)
    routes = ("GET /health 200", "POST /api/v1/payments 201", "GET /api/v1/payments/{id} 200")
    sensitive = [line for line, _ in SENSITIVE if "\n" not in line]
    out: list[str] = []
    for i in range(pods * lines):
        pod = f"7d9f8b6c5-{rand.randrange(36**5):05x}"[:16]
        stamp = f"2026-11-26T09:{i // 60 % 60:02d}:{i % 60:02d}.{rand.randrange(10**9):09d}Z"
        roll = rand.random()
        if roll < 0.01:
            text = rand.choice(sensitive)
        elif roll < 0.05:
            text = rand.choice(HARMLESS)
        else:
            route = rand.choice(routes).replace("{id}", str(rand.randrange(10**11, 10**12)))
            text = (
                f"INFO  [api-gateway v1.0.0] {route} {rand.randrange(1, 400)}ms "
                f"trace_id={rand.getrandbits(128):032x} order={rand.randrange(10**9, 10**12)}"
            )
        out.append(f"{pod} {stamp} {text}")
    return out


def pathological() -> dict[str, str]:
    """1 MB inputs aimed at each pattern's weak spot (no line breaks where that hurts most)."""

    def fill(unit: str) -> str:
        return unit * (MB // len(unit))

    return {
        "digits, one run": fill("4"),
        "digit groups": fill("4111 "),
        "digits and dots": fill("1."),
        "letters, one word": fill("a"),
        "base64 run": fill("Ab0+"),
        "key=, no value": fill("password="),
        "key: opening quote": fill('password: "'),
        "Authorization:": fill("Authorization: "),
        "--password flags": fill("--password "),
        "mysql, no -p": fill("mysql "),
        "mysql, many -p": "mysql " + fill("-pX "),
        "quoted Authorization": fill('Authorization: "x" '),
        "<password> tags": fill("<password>"),
        "scheme://user:": fill("a://b:"),
        "@ after scheme": "a://b:" + fill("@"),
        "%-escapes": fill("%41"),
        "%B track starts": fill("%B4111111111111111^"),
        "eyJ without dots": fill("eyJabc"),
        "BEGIN, no END": "-----BEGIN RSA PRIVATE KEY-----\n" + fill(PEM_BODY[0] + "\n"),
        "BEGIN markers": fill("-----BEGIN PRIVATE KEY-----"),
        "hex hash": fill("deadbeef0123456789"),
    }


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ours(log: list[str]) -> tuple[int, int, bool, float]:
    leaks = sum(secret in redact(line) for line, secret in SENSITIVE)
    false_positives = sum(redact(line) != line for line in HARMLESS)
    idempotent = all(redact(redact(line)) == redact(line) for line, _ in SENSITIVE)
    size = sum(len(line) + 1 for line in log) / MB
    seconds = min(timed(lambda: redact_lines(log)) for _ in range(3))
    return leaks, false_positives, idempotent, size / seconds


def detect_secrets_figures(log: list[str]) -> tuple[int, int, float] | str:
    try:
        from detect_secrets import SecretsCollection
        from detect_secrets.settings import default_settings
    except ImportError:
        return "not installed (pip install detect-secrets into a scratch venv to compare)"

    def flagged(lines: list[str]) -> set[int]:
        """1-based numbers of the lines detect-secrets reports anything on."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pods.log"
            path.write_text("\n".join(lines) + "\n")
            secrets = SecretsCollection()
            with default_settings():
                secrets.scan_file(str(path))
            return {s.line_number for _, s in secrets}

    numbered: list[str] = []
    spans: list[range] = []
    for line, _ in SENSITIVE:
        parts = line.split("\n")
        spans.append(range(len(numbered) + 1, len(numbered) + 1 + len(parts)))
        numbered += parts
    hits = flagged(numbered)
    leaks = sum(not any(n in hits for n in span) for span in spans)
    false_positives = len(flagged(HARMLESS))
    size = sum(len(line) + 1 for line in log) / MB
    seconds = timed(lambda: flagged(log))
    return leaks, false_positives, size / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--lines", type=int, default=1000)
    args = parser.parse_args()
    log = realistic_log(args.pods, args.lines)

    print(
        f"corpus: {len(SENSITIVE)} sensitive lines, {len(HARMLESS)} harmless lines; "
        f"throughput on {args.pods} pods × {args.lines} lines ({sum(map(len, log)) / MB:.1f} MB)"
    )
    print(f"| {'redactor':<22} | {'leaks':>5} | {'false pos.':>10} | {'idempotent':>10} | {'MB/s':>7} |")
    print(f"|{'-' * 24}|{'-' * 7}|{'-' * 12}|{'-' * 12}|{'-' * 9}|")
    leaks, fps, idem, rate = ours(log)
    idem_word = "yes" if idem else "NO"
    print(f"| {'bot/base/redact/':<22} | {leaks:>5} | {fps:>10} | {idem_word:>10} | {rate:>7.1f} |")
    theirs = detect_secrets_figures(log)
    if isinstance(theirs, str):
        print(f"| {'detect-secrets':<22} | {theirs}")
    else:
        leaks, fps, rate = theirs
        print(f"| {'detect-secrets (find)':<22} | {leaks:>5} | {fps:>10} | {'n/a':>10} | {rate:>7.2f} |")

    print("\nadversarial inputs, 1 MB each (linear: none much over a second)")
    print(f"| {'input':<22} | {'ms':>7} | {'MB/s':>7} |")
    print(f"|{'-' * 24}|{'-' * 9}|{'-' * 9}|")
    worst = 0.0
    for name, text in pathological().items():
        seconds = timed(lambda text=text: redact(text))
        worst = max(worst, seconds)
        print(f"| {name:<22} | {seconds * 1000:>7.0f} | {len(text) / MB / seconds:>7.1f} |")
    print(f"\nslowest adversarial MB: {worst * 1000:.0f} ms")


if __name__ == "__main__":
    main()
