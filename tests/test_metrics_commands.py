"""/payflow metrics, query and health end to end: signed requests to the served bot, a real
Prometheus (backfilled with known series), the Slack stand-in recording the three-step upload,
and the real Redis store."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import yaml

from bot.config.catalog import Catalog
from bot.config.settings import Settings
from bot.domain.gate.record import Change
from bot.domain.gate.records import Records
from bot.gateways.charts import COLOR_OF
from bot.shell.runtime import build_runtime
from sandbox import demo
from sandbox.local import free_port, wait_until
from sandbox.prometheus import PrometheusServer
from sandbox.slack_requests import SlackRequests
from sandbox.traffic import BAD, GOOD
from tests.conftest import BOT_TOKEN, SIGNING_SECRET
from tests.support.bot_server import BotServer
from tests.support.chat import Chat
from tests.support.prom import history_prometheus, with_prometheus, without_digests  # noqa: F401

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def catalog(catalog: Catalog) -> Catalog:
    return without_digests(catalog)


@pytest.fixture
def settings(settings: Settings, history_prometheus: PrometheusServer) -> Settings:  # noqa: F811
    return with_prometheus(settings, history_prometheus.url)


def _blocks(answer) -> str:
    return "\n".join(
        b["text"]["text"] if "text" in b else " ".join(e.get("text", "") for e in b.get("elements", []))
        for p in answer.posts
        for b in p.get("blocks", [])
    )


def test_metrics_show_the_loaded_figures_against_the_slos_and_upload_a_chart(chat, slack):
    answer = chat.run("metrics api-gateway 1h", user="dave")  # a viewer may look

    [post] = answer.posts
    body = _blocks(answer)
    assert "api-gateway · last 1h" in body
    assert "✅ every figure with an SLO is within it" in body
    assert "✅ error rate *0.05 %* (SLO ≤ 0.10 %)" in body
    assert f"✅ p95 *{GOOD.quantile(0.95) * 1000:.0f} ms* (SLO ≤ 200 ms)" in body
    # no SLO, so no verdict: p99 and traffic are shown neutral, never with a ✅
    assert f"▫️ p99 *{GOOD.quantile(0.99) * 1000:.0f} ms*\n▫️ requests *" in body
    assert "✅ p99" not in body and "✅ requests" not in body
    assert "of data in the" not in body  # the whole hour is there
    assert "✅ availability *99.950 %* (SLO ≥ 99.900 %)" in body
    assert "live: 🔵 blue" in body
    # the chart: files.getUploadURLExternal → the bytes → files.completeUploadExternal
    [get_url] = slack.calls_to("files.getUploadURLExternal")
    assert get_url.params["filename"] == "api-gateway-1h.png"
    [complete] = slack.calls_to("files.completeUploadExternal")
    assert complete.params["channel_id"] == post["channel"]
    [png] = slack.uploads.values()
    assert png.startswith(PNG) and len(png) > 5000
    [entry] = chat.audit()
    assert (entry.action, entry.target, entry.outcome) == ("metrics", "api-gateway", "ok")


def test_a_service_out_of_its_slo_stands_out(chat):
    body = _blocks(chat.run("metrics wallet-service 30m"))
    assert "🔴 error rate, p95, availability outside the SLO" in body
    assert f"🔴 error rate *{BAD.error_ratio * 100:.1f} %*" in body
    assert f"🔴 p95 *{BAD.quantile(0.95) * 1000:.0f} ms*" in body
    assert "🔴 availability *40 %* (SLO ≥ 99.900 %)" in body


def test_no_data_is_not_healthy(chat):
    body = _blocks(chat.run("metrics transaction-service"))
    assert "❔ no figure for error rate, p95, p99, requests, availability" in body
    assert "❔ error rate *no data*" in body
    assert "✅" not in body


def test_query_answers_a_table_for_operators(chat):
    answer = chat.run('query sum by (service) (rate(http_requests_total{status=~"5.."}[1h]))')
    body = _blocks(answer)
    assert '{service="api-gateway"}' in body and '{service="wallet-service"}' in body
    assert answer.posts[0]["text"] == "Query result: 3 series"


def test_query_with_a_window_is_a_chart(chat, slack):
    answer = chat.run("query sum by (service) (rate(http_requests_total[5m])) --window 1h")
    assert answer.posts == []
    assert len(slack.calls_to("files.completeUploadExternal")) == 1
    assert next(iter(slack.uploads.values())).startswith(PNG)
    [entry] = chat.audit()
    assert "3 series charted" in entry.detail


def test_invalid_promql_is_answered_with_prometheus_error(chat, slack):
    answer = chat.run("query sum(rate(http_requests_total[5m])")
    assert answer.posts == [] and slack.uploads == {}
    [reply] = answer.replies
    assert reply["response_type"] == "ephemeral"
    assert "Prometheus refused the query: `invalid parameter" in reply["text"]
    assert "parse error: unclosed left parenthesis" in reply["text"]
    [entry] = chat.audit()
    assert entry.outcome == "ok" and "refused" in entry.detail


def test_a_viewer_cannot_query(chat, slack, redis_server):
    answer = chat.run("query up", user="dave")
    assert answer.posts == [] and slack.uploads == {}
    assert "This needs the *operator* role; you have viewer." in answer.replies[0]["text"]
    [entry] = chat.audit()
    assert (entry.action, entry.outcome) == ("query", "denied")
    assert set(redis_server.client().keys()) == {
        "payflow:audit",
        "payflow:audit:chain",
    }  # nothing but the audit


BAD_INPUT = [
    ("metrics api-gateway 999d", "`999d` is not a window I can use: say 1m to 7d"),
    ("metrics api-gateway abc", "`abc` is not a window I can use"),
    ("metrics api-gatewy", "Unknown service `api-gatewy`. Did you mean `api-gateway`?"),
    ("metrics", "Say which service"),
    ("metrics api-gateway 1h extra", "Too many arguments: `extra`"),
    ("query " + "x" * 301, "That PromQL is 301 characters; at most 300. Nothing was run."),
    ("query up --window 0s", "`0s` is not a window I can use"),
    ("query up --window", "`--window` needs a duration"),
    ("query", "Say which PromQL to run"),
    ("health nope", "Unknown service `nope`."),
    ("digest later", "`later` is not understood here"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_INPUT, ids=[t[:30] for t, _ in BAD_INPUT])
def test_bad_input_gets_a_clear_answer_and_changes_nothing(
    chat, slack, k8s_view, redis_server, text, expected
):
    before = k8s_view.fingerprint()
    answer = chat.run(text)
    assert expected in answer.ack_text
    assert answer.replies == [] and answer.posts == [] and slack.uploads == {}
    assert k8s_view.fingerprint() == before
    assert redis_server.client().dbsize() == 0


def _pixels(png: bytes, rgb: str) -> int:
    """How many pixels of the chart are (nearly) this color."""
    import io

    from matplotlib.image import imread

    image = imread(io.BytesIO(png))[:, :, :3]
    want = [int(rgb[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    return int((abs(image - want).max(axis=2) < 0.04).sum())


def test_each_color_is_drawn_in_its_color(chat, slack):
    chat.run("metrics wallet-service 1h")  # the history has wallet-service on green only
    [png] = slack.uploads.values()
    assert _pixels(png, COLOR_OF["green"]) > 200
    assert _pixels(png, "#ff7f0e") == 0  # matplotlib's second default color: what "green" used to be
    slack.reset()
    chat.run("metrics api-gateway 1h")  # and api-gateway on blue only
    [png] = slack.uploads.values()
    assert _pixels(png, COLOR_OF["blue"]) > 200
    assert _pixels(png, COLOR_OF["green"]) == 0


def test_a_window_with_less_data_than_asked_says_so_and_rates_the_data_present(chat):
    """The history holds 2 h; auth-service serves a steady 20 req/s. Over 6 h a plain rate would
    spread those 2 h over 6 (6.7 req/s)."""
    body = _blocks(chat.run("metrics auth-service 6h"))
    # the history is 2 h old when the session starts: by this test the data present spans about that
    [(hours, minutes, again)] = re.findall(
        r"⏳ only (\d+) h(?: (\d+) min)? of data in the 6h window: "
        r"the figures are over those (\d+ h(?: \d+ min)?)",
        body,
    )
    covered = int(hours) * 60 + int(minutes or 0)
    assert 100 <= covered <= 150 and again == f"{hours} h" + (f" {minutes} min" if minutes else "")
    [rps] = re.findall(r"requests \*([\d.]+)/s\*", body)
    assert 19.0 <= float(rps) <= 21.0
    [entry] = chat.audit()
    assert entry.outcome == "ok" and "of data in the 6h window" in entry.detail


def _switched_change(chat, minutes_ago: float) -> None:
    at = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()
    change = Change(
        "chg-0000beef",
        "deploy",
        "api-gateway",
        "blue",
        "green",
        "payflow/api-gateway:v1.0.0",
        "payflow/api-gateway:v1.1.0",
        3,
        "U0ALICE",
        "",
        "C1",
        state="done",
        switched_at=at,
    )
    store = chat.bot.runtime.store
    assert chat.bot.call(store.create(change.key, change.to_record()))
    chat.bot.call(Records(store, lock_ttl=60, lease_seconds=30).reindex())  # as a worker's start does


def test_a_chart_that_cannot_be_uploaded_becomes_a_table_with_the_switch(chat, slack):
    _switched_change(chat, minutes_ago=20)
    slack.fail_next("files.getUploadURLExternal", error="invalid_arguments")  # final: not retried

    answer = chat.run("metrics api-gateway 1h")

    assert slack.uploads == {}
    figures, table = answer.posts
    assert "✅ error rate" in json.dumps(figures, ensure_ascii=False)
    text = table["text"]
    assert "the chart could not be uploaded" in text and "The figures as a table instead:" in text
    assert re.search(r"Requests \(req/s\): blue +[\d.]+", text)
    assert re.search(r"Error rate \(%\): blue", text) and re.search(r"Latency p95 \(ms\): blue", text)
    assert "UTC  → green v1.1.0" in text  # the moment traffic switched, from the change record
    assert "Something went wrong" not in json.dumps(answer.replies + answer.posts)
    [entry] = chat.audit()
    assert entry.outcome == "ok" and "chart as a table: the chart could not be uploaded" in entry.detail


def test_metrics_without_an_answer_from_prometheus_is_audited_failed(settings, catalog, k8s_view, slack):
    dead = replace(settings, prometheus_url=f"http://127.0.0.1:{free_port()}")
    server = BotServer(build_runtime(dead, catalog)).start()
    try:
        chat = Chat(server, slack, SlackRequests(SIGNING_SECRET, response_url=slack.response_url("cmd")))
        body = _blocks(chat.run("metrics api-gateway 1h"))
        [entry] = chat.audit()
    finally:
        server.stop()
    assert "❔ error rate *unavailable:" in body
    assert (entry.action, entry.outcome) == ("metrics", "failed")
    assert slack.uploads == {}


def test_the_digest_says_prometheus_url_not_set_once(settings, catalog, k8s_view, slack):
    unset = replace(settings, prometheus_url=None)
    server = BotServer(build_runtime(unset, catalog)).start()
    try:
        chat = Chat(server, slack, SlackRequests(SIGNING_SECRET, response_url=slack.response_url("cmd")))
        answer = chat.run("digest now")
    finally:
        server.stop()
    [post] = answer.posts
    everything = json.dumps(post, ensure_ascii=False)
    assert everything.count("PROMETHEUS_URL") == 1
    assert (
        "PROMETHEUS_URL not set: no traffic, latency, saturation, dependency or alert figures" in everything
    )
    assert "rps — ❔" in everything or "requests — ❔" in everything  # each figure still shown as unknown


# --- charts under the pod's security context (readOnlyRootFilesystem, no writable HOME) -------

READ_ONLY_TMP = """
set -e
mount --make-rprivate /
for d in /tmp /var/tmp; do mount --bind "$d" "$d"; mount -o remount,bind,ro "$d"; done
if [ -n "$SCRATCH" ]; then mount -t tmpfs -o size=64m scratch "$SCRATCH"; fi
cd /tmp
exec "$@"
"""


def _can_unshare() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


needs_mount_namespace = pytest.mark.skipif(
    not _can_unshare(), reason="needs `unshare -m` (root or CAP_SYS_ADMIN) to make /tmp read-only"
)


@pytest.fixture
def read_only_serve(slack, redis_url, kubeconfig, k8s_view, history_prometheus, tmp_path, start_serve):  # noqa: F811
    """`serve` as the pod runs it: /tmp, /var/tmp and the working directory read-only, HOME and
    MPLCONFIGDIR unwritable; `scratch` (an emptyDir) is the only writable place when asked."""

    def start(*, scratch: bool) -> str:
        catalog_file = tmp_path / "payflow.yaml"
        demo.demo_catalog_file(catalog_file, operators=())
        scratch_dir = tmp_path / "scratch"
        scratch_dir.mkdir(exist_ok=True)
        # the CA as a file, as a pod reads its service account's: the client then writes no temp file
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        ca = tmp_path / "ca.crt"
        ca.write_bytes(base64.b64decode(cluster.pop("certificate-authority-data")))
        cluster["certificate-authority"] = str(ca)
        pod_kubeconfig = tmp_path / "pod.kubeconfig"
        pod_kubeconfig.write_text(yaml.safe_dump(config))
        settings = {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "REDIS_URL": redis_url,
            "KUBECONFIG": str(pod_kubeconfig),
            "PAYFLOW_CONFIG": str(catalog_file),
            "PROMETHEUS_URL": history_prometheus.url,
            "HOME": "/tmp/no-home",
            "MPLCONFIGDIR": "/tmp/no-home/.config/matplotlib",
            "SCRATCH": str(scratch_dir) if scratch else "",
            "TMPDIR": str(scratch_dir) if scratch else "/tmp",
        }
        wrap = ("unshare", "-m", "sh", "-c", READ_ONLY_TMP, "sh")
        return start_serve(settings, "--no-worker", wrap=wrap).url

    return start


def _metrics_over_http(url: str, slack) -> None:
    signed = SlackRequests(SIGNING_SECRET, response_url=slack.response_url("ro")).slash(
        "metrics api-gateway 1h",
        user_id="U0DAVE",
        user_name="dave",
        channel_id=demo.OPS_CHANNEL_ID,
        channel_name=demo.OPS_CHANNEL_NAME,
    )
    answer = httpx.post(
        url + "/slack/events", content=signed.body.encode(), headers=signed.headers, timeout=5
    )
    assert answer.status_code == 200
    wait_until(lambda: len(slack.messages(demo.OPS_CHANNEL_ID)) >= 2, 30, "the figures and the chart")


@needs_mount_namespace
def test_charts_render_with_a_read_only_home_when_a_temp_dir_is_writable(read_only_serve, slack):
    _metrics_over_http(read_only_serve(scratch=True), slack)
    [png] = slack.uploads.values()
    assert png.startswith(PNG)


@needs_mount_namespace
def test_charts_degrade_to_a_table_when_nothing_is_writable(read_only_serve, slack, redis_server):
    _metrics_over_http(read_only_serve(scratch=False), slack)
    assert slack.uploads == {}
    texts = [m.text for m in slack.messages(demo.OPS_CHANNEL_ID)]
    [table] = [t for t in texts if "as a table" in t]
    assert "the chart could not be drawn here (no writable directory for matplotlib's cache" in table
    assert re.search(r"Requests \(req/s\): blue +[\d.]+", table)
    assert not any("Something went wrong" in t for t in texts)
