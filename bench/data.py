"""The data-tier commands against real stores at benchmark scale, one case each, in one table.

`db`: `/payflow db`, `db slow`, `db slow 25` and `db activity` sent signed to the served bot,
which reads a private PostgreSQL seeded with 1,000,000 transactions (and its slow statements in
pg_stat_statements) as the bot's role `payflow_bot`: ack, and command → answer posted by the
Slack stand-in's clock, median and max of `--runs` taken in rounds (a busy moment of the machine
hits every command alike), and the answer's size.

`tokens`: `/payflow tokens` sent signed to the served bot (sandbox cluster, Slack stand-in) with
100,000 blacklist keys in a private redis-server: time from the command to the answer posted,
and what the count costs Redis itself: the latency of GETs that another client (a separate
process) sends in a loop while the SCAN walk runs, against the same GETs with Redis idle and
during the operations guide's `KEYS "*token*"`. Goal: GET p99 ≤ 1 ms during `tokens`.

A case is a `Case(name, run)` in `CASES`; `run` returns rows for the table.

    .venv/bin/python bench/data.py [--only db|tokens] [--transactions 1000000] [--tokens 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.config.catalog import Catalog, load_catalog  # noqa: E402
from bot.config.settings import Settings  # noqa: E402
from bot.shell.runtime import build_runtime  # noqa: E402
from sandbox import demo  # noqa: E402
from sandbox.cluster import Cluster  # noqa: E402
from sandbox.k8s_api import SandboxServer  # noqa: E402
from sandbox.payflow_db import PayflowDatabase  # noqa: E402
from sandbox.payflow_redis import fill_blacklist  # noqa: E402
from sandbox.seed import seed  # noqa: E402
from sandbox.slack_api import SlackApiStub  # noqa: E402
from sandbox.slack_requests import SlackRequests  # noqa: E402
from tests.support.bot_server import BotServer  # noqa: E402
from tests.support.chat import Chat  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

SECRET = "bench-signing-secret"
TOKEN = "xoxb-bench"

# Another client: GET in a loop until stdin closes, then one JSON list of [monotonic start, µs].
PROBE = """
import json, sys, threading, time, redis
client = redis.Redis.from_url(sys.argv[1])
client.set("bench:probe", "x")
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
samples = []
while not done.is_set():
    t = time.monotonic()
    client.get("bench:probe")
    samples.append((t, (time.monotonic() - t) * 1e6))
client.delete("bench:probe")
json.dump(samples, sys.stdout)
"""


@dataclass(frozen=True)
class Row:
    case: str
    figure: str
    value: str
    goal: str = ""


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[argparse.Namespace], list[Row]]


@contextmanager
def served_bot(catalog: Catalog, env: dict[str, str]) -> Iterator[Chat]:
    """The bot as the tests serve it: sandbox cluster over HTTP, Slack stand-in, embedded store."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        SlackApiStub(bot_token=TOKEN, usergroups=demo.USERGROUPS) as slack,
    ):
        sandbox = SandboxServer(seed(Cluster(), catalog)).start()
        try:
            sandbox.write_kubeconfig(Path(tmp) / "kubeconfig")
            settings = Settings(
                slack_bot_token=TOKEN,
                slack_signing_secret=SECRET,
                slack_api_url=slack.api_url,
                kubeconfig=str(Path(tmp) / "kubeconfig"),
                env=env,
            )
            bot = BotServer(build_runtime(settings, catalog)).start()
            try:
                yield Chat(bot, slack, SlackRequests(SECRET, response_url=slack.response_url("cmd")))
            finally:
                bot.stop()
        finally:
            sandbox.stop()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _latency(samples: list[tuple[float, float]], windows: list[tuple[float, float]]) -> list[float]:
    return [us for t, us in samples if any(a <= t <= b for a, b in windows)]


def _get_figures(case: str, label: str, values: list[float], goal: str = "") -> list[Row]:
    return [
        Row(
            case,
            f"GET p50 / p99 / max {label}",
            "{:.0f} / {:.0f} / {:.0f} µs".format(
                _percentile(values, 0.5), _percentile(values, 0.99), max(values, default=float("nan"))
            ),
            goal,
        ),
        Row(case, f"GETs measured {label}", f"{len(values):,}"),
    ]


def _catalog(scan_count: int) -> Catalog:
    base = demo.demo_catalog(load_catalog())
    conf = base.data.redis.model_copy(update={"scan_budget_seconds": 30.0, "scan_count": scan_count})
    return base.model_copy(update={"digests": [], "data": base.data.model_copy(update={"redis": conf})})


@dataclass
class _Run:
    """One scan_count: the windows in which the command ran, its durations and Redis's stats."""

    scan_count: int
    windows: list[tuple[float, float]]
    durations: list[float]
    answer: str = ""
    scan_calls: int = 0
    scan_usec: float = 0.0
    pttl_calls: int = 0
    keys_calls: int = 0


def _run_tokens(server: RedisServer, scan_count: int, runs: int) -> _Run:
    client = server.client()
    run = _Run(scan_count, [], [])
    try:
        with served_bot(_catalog(scan_count), {"PAYFLOW_REDIS_URL": server.url}) as chat:
            chat.run("tokens", user="alice")  # warm: imports, pools, first connection
            client.config_resetstat()
            for _ in range(runs):
                t = time.monotonic()
                answer = chat.run("tokens", user="alice")
                end = time.monotonic()
                run.durations.append(end - t)
                run.windows.append((t, end))
                run.answer = answer.posts[0]["text"].split(" · ")[0] if answer.posts else "no answer"
                time.sleep(0.3)
        stats = client.info("commandstats")
    finally:
        client.close()
    run.scan_calls = int(stats.get("cmdstat_scan", {}).get("calls", 0)) // runs
    run.scan_usec = float(stats.get("cmdstat_scan", {}).get("usec_per_call", 0.0))
    run.pttl_calls = int(stats.get("cmdstat_pttl", {}).get("calls", 0)) // runs
    run.keys_calls = int(stats.get("cmdstat_keys", {}).get("calls", 0))
    return run


def bench_tokens(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = [Row("tokens", "keys in the blacklist", f"{args.tokens:,}")]
    with RedisServer() as server:
        client = server.client()
        fill_blacklist(client, args.tokens)
        probe = subprocess.Popen(
            [sys.executable, "-c", PROBE, server.url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(0.5)  # the probe connects and warms up
            t = time.monotonic()
            time.sleep(1.0)
            idle = [(t, time.monotonic())]
            done = [_run_tokens(server, count, args.runs) for count in args.scan_count]
            t = time.monotonic()
            found = len(client.keys("*token*"))  # the guide's way, once, for comparison
            keys_window = [(t, time.monotonic())]
        finally:
            out, _ = probe.communicate(timeout=30)  # closes its stdin: the probe stops and reports
            client.close()
    samples = [(float(a), float(b)) for a, b in json.loads(out)]
    rows += _get_figures("tokens", "(Redis idle)", _latency(samples, idle))
    for run in done:
        case = f"tokens COUNT {run.scan_count}"
        rows.append(Row(case, "answer", run.answer))
        rows.append(
            Row(
                case,
                f"command → answer posted, median / max of {len(run.durations)}",
                f"{statistics.median(run.durations):.2f} / {max(run.durations):.2f} s",
            )
        )
        rows.append(
            Row(
                case,
                "SCAN calls per command, Redis's µs per call",
                f"{run.scan_calls:,}, {run.scan_usec:.0f} µs",
            )
        )
        rows.append(
            Row(
                case,
                "PTTL per command (TTL sample), KEYS calls",
                f"{run.pttl_calls:,}, {run.keys_calls}",
                "KEYS 0",
            )
        )
        rows += _get_figures(case, "(during the command)", _latency(samples, run.windows), "p99 ≤ 1000 µs")
    seconds = keys_window[0][1] - keys_window[0][0]
    rows.append(
        Row("KEYS", 'the guide\'s KEYS "*token*", for comparison', f"{found:,} keys in {seconds:.3f} s")
    )
    rows += _get_figures("KEYS", "(during KEYS)", _latency(samples, keys_window))
    return rows


DB_COMMANDS = (("db", "dave"), ("db slow", "alice"), ("db slow 25", "alice"), ("db activity", "alice"))


def _db_answer(chat: Chat, text: str, user: str) -> tuple[float, float, int]:
    """(ack s, command → answer posted s, characters of the answer's blocks) of one run."""
    slack = chat.slack
    posted, replied = len(slack.calls_to("chat.postMessage")), len(slack.responses)
    sent = time.time()
    ack = chat.send(text, user=user)
    acked = time.time()
    chat.bot.idle(60)
    answers = slack.calls_to("chat.postMessage")[posted:] + slack.responses[replied:]
    said = " ".join(str(c.params.get("text", "")) for c in answers)
    if ack.status_code != 200 or not answers or "did not answer" in said or "went wrong" in said:
        raise RuntimeError(f"{text}: no answer ({ack.status_code} {ack.text[:100]} {said[:200]})")
    chars = sum(len(json.dumps(c.params.get("blocks") or [], ensure_ascii=False)) for c in answers)
    return acked - sent, max(c.at for c in answers) - sent, chars


def bench_db(args: argparse.Namespace) -> list[Row]:
    began = time.monotonic()
    users = max(500, args.transactions // 100)
    with PayflowDatabase(users=users, transactions=args.transactions) as db:
        seeded = f"{args.transactions:,} transactions, {users:,} users in {time.monotonic() - began:.1f} s"
        rows = [Row("db", "seeded (generate_series) + slow statements", seeded)]
        catalog = demo.demo_catalog(load_catalog()).model_copy(update={"digests": []})
        with served_bot(catalog, {"DATABASE_URL": db.bot_dsn}) as chat:
            for text, user in DB_COMMANDS:
                _db_answer(chat, text, user)  # warm: the first connection, the first rendering
            runs: dict[str, list[tuple[float, float, int]]] = {text: [] for text, _ in DB_COMMANDS}
            for _ in range(args.runs):
                for text, user in DB_COMMANDS:
                    runs[text].append(_db_answer(chat, text, user))
    for text, measured in runs.items():
        ack = statistics.median(m[0] * 1000 for m in measured)
        answers = [m[1] * 1000 for m in measured]
        rows.append(
            Row(
                text,
                f"ack / command → answer posted, median (max) of {len(measured)}",
                f"{ack:.1f} ms / {statistics.median(answers):.0f} ms ({max(answers):.0f} ms)",
            )
        )
        rows.append(Row(text, "answer's blocks, characters", f"{measured[-1][2]:,}"))
    return rows


CASES: list[Case] = [Case("db", bench_db), Case("tokens", bench_tokens)]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", action="append", choices=[c.name for c in CASES])
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--scan-count",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1000, 250],
        help="catalog data.redis.scan_count values to compare (default 1000,250)",
    )
    args = parser.parse_args()
    rows = [row for case in CASES if not args.only or case.name in args.only for row in case.run(args)]
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("case", "figure", "value")]
    print(f"{'case':<{widths[0]}}  {'figure':<{widths[1]}}  {'value':<{widths[2]}}  goal")
    for r in rows:
        print(f"{r.case:<{widths[0]}}  {r.figure:<{widths[1]}}  {r.value:<{widths[2]}}  {r.goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
