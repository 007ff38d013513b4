"""/payflow metrics, query and health end to end: signed requests to the served bot, a real
Prometheus (backfilled with known series), the Slack stand-in recording the three-step upload,
and the real Redis store."""

from __future__ import annotations

import pytest

from bot.config import Catalog
from bot.settings import Settings
from sandbox.prometheus import PrometheusServer
from sandbox.traffic import BAD, GOOD
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
    assert "✅ every figure within its SLO" in body
    assert "✅ error rate *0.05 %* (SLO ≤ 0.10 %)" in body
    assert f"✅ p95 *{GOOD.quantile(0.95) * 1000:.0f} ms* (SLO ≤ 200 ms)" in body
    assert f"✅ p99 *{GOOD.quantile(0.99) * 1000:.0f} ms*" in body
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
