"""Prometheus gateway: the only module that talks to Prometheus.

prometheus-api-client is blocking (requests), so every call runs in a small thread pool with a
timeout on the HTTP request, on Prometheus's own evaluation (`timeout=` parameter) and around
the whole call. Its retries are switched off: a down Prometheus must be reported within the
timeout, not after a back-off.

Readings are never guessed: a missing series is "no data", a NaN is "NaN", a failed query says
why, and none of them is ever shown as healthy. Several figures are fetched in ONE query by
tagging each expression with a label and joining them with `or`; questions about all services
are aggregated `by (service)` — never one query per service.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.config.catalog import Catalog, load_catalog
from bot.config.metrics import Dependency

if TYPE_CHECKING:
    from prometheus_api_client.prometheus_connect import PrometheusConnect

log = logging.getLogger(__name__)

TAG = "payflow_metric"
MAX_POINTS = 11_000  # Prometheus refuses more points per series in a range query


class PromError(Exception):
    """A query did not produce a result; `str()` is fit to show a user."""


class PromUnavailable(PromError):
    """Prometheus could not be reached, timed out or failed (5xx)."""


class PromQueryError(PromError):
    """Prometheus refused the query (4xx); `str()` is Prometheus's own error text."""


@dataclass(frozen=True)
class Sample:
    labels: Mapping[str, str]
    value: float  # may be NaN or ±Inf, exactly as Prometheus said


@dataclass(frozen=True)
class Series:
    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]  # (unix time, value)


@dataclass(frozen=True)
class Scalar:
    value: float


@dataclass(frozen=True)
class Reading:
    """One figure: a value, or None and why (`problem`)."""

    value: float | None
    problem: str | None = None

    @classmethod
    def of(cls, sample: Sample | None, missing: str = "no data") -> Reading:
        if sample is None:
            return cls(None, missing)
        if math.isnan(sample.value):
            return cls(None, "NaN")
        return cls(sample.value)

    def scaled(self, factor: float) -> Reading:
        return self if self.value is None else Reading(self.value * factor, self.problem)


@dataclass(frozen=True)
class Pair:
    """A figure now and the same figure one period earlier (yesterday, last week)."""

    now: Reading
    before: Reading


@dataclass(frozen=True)
class ColorReading:
    """What the bake watch needs about one color; None values mean no data and `problem` says why."""

    error_rate: float | None  # ratio 0..1
    p95_ms: float | None
    rps: float | None
    problem: str | None = None


@dataclass(frozen=True)
class ServiceFigures:
    """The golden signals of one service (or color) over a window."""

    rps: Reading
    error_rate: Reading
    p95_ms: Reading
    p99_ms: Reading
    availability: Reading
    cpu: Reading = field(default_factory=lambda: Reading(None, "not asked"))
    memory: Reading = field(default_factory=lambda: Reading(None, "not asked"))


@dataclass(frozen=True)
class Overview:
    """Every service at once, from a handful of aggregated queries."""

    services: dict[str, ServiceFigures]
    window: str
    problems: tuple[str, ...] = ()  # e.g. "traffic figures: Prometheus unreachable (ConnectError)"


def _timed_out(exc: BaseException) -> bool:
    """True when requests' error wraps urllib3's read or connect timeout (a refused connection is
    a NewConnectionError, which urllib3 makes a subclass of its connect timeout)."""
    from urllib3.exceptions import MaxRetryError, NewConnectionError
    from urllib3.exceptions import TimeoutError as Urllib3Timeout

    for arg in exc.args:
        reason = arg.reason if isinstance(arg, MaxRetryError) else arg
        if isinstance(reason, Urllib3Timeout) and not isinstance(reason, NewConnectionError):
            return True
    return False


def _value(raw: str | float) -> float:
    return float(raw)  # Prometheus sends "NaN", "+Inf", "-Inf" as strings float() understands


def _prometheus_error(exc: Exception) -> PromError:
    """prometheus-api-client puts the response body into the message as `repr(bytes)`."""
    text = str(exc)
    m = re.match(r"HTTP Status Code (\d+) \((b['\"].*['\"])\)$", text, re.S)
    if not m:
        return PromUnavailable(f"Prometheus failed: {text[:200]}")
    status = int(m.group(1))
    try:
        body = ast.literal_eval(m.group(2)).decode("utf-8", "replace")
    except (ValueError, SyntaxError):
        body = m.group(2)
    detail = body
    try:
        import json

        detail = json.loads(body).get("error") or body
    except ValueError:
        pass
    detail = " ".join(str(detail).split())[:400]
    if 400 <= status < 500:
        return PromQueryError(detail)
    return PromUnavailable(f"Prometheus answered {status}: {detail}")


def tagged(exprs: Mapping[str, str]) -> str:
    """One PromQL expression returning every expression's series, each labelled `TAG=<name>`."""
    for name in exprs:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"tag {name!r} must be a plain word")
    parts = [f'label_replace({expr}, "{TAG}", "{name}", "", "")' for name, expr in exprs.items()]
    return " or ".join(parts)


def untag(samples: Iterable[Sample], names: Iterable[str]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {name: [] for name in names}
    for s in samples:
        labels = dict(s.labels)
        name = labels.pop(TAG, None)
        if name in out:
            out[name].append(Sample(labels, s.value))
    return out


def _regex_literal(name: str) -> str:
    return re.escape(name).replace("\\", "\\\\")


class Prom:
    def __init__(self, url: str, *, timeout: float = 5.0, catalog: Catalog | None = None, workers: int = 8):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.catalog = catalog or load_catalog()
        self.queries = 0  # HTTP queries sent: the digest's budget is checked against it
        self._connection: PrometheusConnect | None = None  # made on first use: a web process never pays
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prom")

    @property
    def _client(self) -> PrometheusConnect:
        if self._connection is None:
            from prometheus_api_client.prometheus_connect import PrometheusConnect  # imports requests
            from urllib3.util.retry import Retry

            self._connection = PrometheusConnect(
                url=self.url,
                retry=Retry(total=0, raise_on_status=False),
                timeout=self.timeout,  # type: ignore[arg-type]  # declared int; requests takes seconds as float
            )
        return self._connection

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._connection is not None:
            self._connection.close()

    # -- raw queries ------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., Any], *args: object, **kwargs: object) -> Any:
        """`fn(*args, **kwargs)` in the pool, within the deadline; its answer is Prometheus' decoded JSON."""
        import requests

        def call() -> Any:
            try:
                return fn(*args, timeout=self.timeout, **kwargs)
            except requests.Timeout:
                raise PromUnavailable(self._no_answer()) from None
            except requests.RequestException as exc:
                if _timed_out(exc):  # a read timeout with retries off comes as a ConnectionError
                    raise PromUnavailable(self._no_answer()) from None
                raise PromUnavailable(f"Prometheus unreachable ({type(exc).__name__})") from None
            except ValueError as exc:  # a body that is not JSON: not Prometheus
                raise PromUnavailable(f"Prometheus sent an unreadable answer ({exc})") from None
            except Exception as exc:  # PrometheusApiClientException: non-200 answers
                if type(exc).__name__ == "PrometheusApiClientException":
                    raise _prometheus_error(exc) from None
                raise

        self.queries += 1
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._pool, call), self.timeout + 1)
        except TimeoutError:
            raise PromUnavailable(self._no_answer()) from None

    def _no_answer(self) -> str:
        return f"Prometheus did not answer within {self.timeout:g} s"

    def _params(self) -> dict[str, str]:
        return {"timeout": f"{self.timeout:g}s"}

    async def instant(self, promql: str, at: datetime | None = None) -> list[Sample] | Scalar:
        """An instant query: a vector as samples, or a scalar."""
        params = self._params()
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        data = await self._call(self._client.custom_query, promql, params=params)
        if isinstance(data, list) and len(data) == 2 and not isinstance(data[0], dict):
            try:
                return Scalar(_value(data[1]))
            except (TypeError, ValueError):
                raise PromQueryError("the query returned a string, not a number") from None
        return [Sample(dict(item.get("metric", {})), _value(item["value"][1])) for item in data or []]

    async def vector(self, promql: str, at: datetime | None = None) -> list[Sample]:
        result = await self.instant(promql, at)
        if isinstance(result, Scalar):
            return [Sample({}, result.value)]
        return result

    async def range(self, promql: str, start: datetime, end: datetime, step_seconds: int) -> list[Series]:
        if (end - start).total_seconds() / step_seconds > MAX_POINTS:
            raise ValueError("too many points for one range query")
        data = await self._call(
            self._client.custom_query_range,
            promql,
            start_time=start,
            end_time=end,
            step=str(step_seconds),
            params=self._params(),
        )
        return [
            Series(dict(item.get("metric", {})), tuple((float(t), _value(v)) for t, v in item["values"]))
            for item in data or []
        ]

    async def batch(self, exprs: Mapping[str, str], at: datetime | None = None) -> dict[str, list[Sample]]:
        """Several expressions in one query."""
        return untag(await self.vector(tagged(exprs), at), exprs)

    async def batch_range(
        self, exprs: Mapping[str, str], start: datetime, end: datetime, step_seconds: int
    ) -> dict[str, list[Series]]:
        out: dict[str, list[Series]] = {name: [] for name in exprs}
        for s in await self.range(tagged(exprs), start, end, step_seconds):
            labels = dict(s.labels)
            name = labels.pop(TAG, None)
            if name in out:
                out[name].append(Series(labels, s.points))
        return out

    # -- the catalog's templates ------------------------------------------------------------

    def expr(
        self,
        name: str,
        *,
        service: str | None = None,
        color: str | None = None,
        by: str = "service",
        window: str | None = None,
        quantile: float | None = None,
    ) -> str:
        """A template from the catalog with its placeholders filled in."""
        text: str = getattr(self.catalog.promql.templates, name)
        values = {
            "service": _regex_literal(service) if service else ".+",
            "color": _regex_literal(color) if color else ".*",
            "by": by,
            "window": window or self.catalog.promql.window,
            "quantile": f"{quantile:g}" if quantile is not None else "",
        }
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        return text

    def _signals(
        self, *, service: str | None, color: str | None, by: str, window: str, availability_window: str
    ) -> dict[str, str]:
        def scoped(name: str, window: str, quantile: float | None = None) -> str:
            return self.expr(name, service=service, color=color, by=by, window=window, quantile=quantile)

        return {
            "rps": scoped("rps", window),
            "error_rate": scoped("error_rate", window),
            "p95": scoped("latency", window, 0.95),
            "p99": scoped("latency", window, 0.99),
            "availability": scoped("availability", availability_window),
        }

    def _saturation(self, *, service: str | None, by: str, window: str) -> dict[str, str]:
        return {
            "cpu": self.expr("cpu", service=service, by=by, window=window),
            "memory": self.expr("memory", service=service, by=by, window=window),
        }

    # -- domain questions -------------------------------------------------------------------

    async def color_health(self, service: str, color: str, window: str = "5m") -> ColorReading:
        """Error rate, p95 and RPS of one color: one query."""
        exprs = {
            "rps": self.expr("rps", service=service, color=color, by="service, color", window=window),
            "error_rate": self.expr(
                "error_rate", service=service, color=color, by="service, color", window=window
            ),
            "p95": self.expr(
                "latency", service=service, color=color, by="service, color", window=window, quantile=0.95
            ),
        }
        try:
            found = await self.batch(exprs)
        except PromError as exc:
            return ColorReading(None, None, None, str(exc))
        readings = {name: Reading.of(samples[0] if samples else None) for name, samples in found.items()}
        problems = [f"{name}: {r.problem}" for name, r in readings.items() if r.problem]
        p95 = readings["p95"].scaled(1000)
        return ColorReading(
            readings["error_rate"].value,
            p95.value,
            readings["rps"].value,
            "; ".join(problems) or None,
        )

    async def service_figures(
        self, service: str, window: str, *, availability_window: str | None = None
    ) -> ServiceFigures:
        """The golden signals of one service (all colors) over `window`: one query."""
        exprs = self._signals(
            service=service,
            color=None,
            by="service",
            window=window,
            availability_window=availability_window or window,
        )
        found = await self.batch(exprs)
        return _figures({name: samples[0] if samples else None for name, samples in found.items()})

    async def overview(self, window: str, *, saturation: bool = True) -> Overview:
        """Every service of the catalog in two queries (traffic, saturation), run side by side."""
        signals = self._signals(
            service=None,
            color=None,
            by="service",
            window=window,
            availability_window=self.catalog.promql.availability_window,
        )
        groups: list[tuple[str, Mapping[str, str]]] = [("traffic figures", signals)]
        if saturation:
            window_now = self.catalog.promql.window
            groups.append(("CPU/memory", self._saturation(service=None, by="service", window=window_now)))
        results = await asyncio.gather(*(self.batch(exprs) for _, exprs in groups), return_exceptions=True)
        problems: list[str] = []
        unavailable: dict[str, str] = {} if saturation else {"cpu": "not asked", "memory": "not asked"}
        by_service: dict[str, dict[str, Sample | None]] = {s: {} for s in self.catalog.services}
        for (label, exprs), result in zip(groups, results, strict=True):
            if isinstance(result, PromError):
                problems.append(f"{label}: {result}")
                unavailable |= {name: str(result) for name in exprs}
            elif isinstance(result, BaseException):
                raise result
            else:
                for name, samples in result.items():
                    for s in samples:
                        svc = s.labels.get("service")
                        if svc in by_service:
                            by_service[svc][name] = s
        services = {svc: _figures(found, unavailable) for svc, found in by_service.items()}
        return Overview(services, window, tuple(problems))

    async def dependencies(self, deps: Mapping[str, Dependency] | None = None) -> dict[str, Reading]:
        """Each dependency's check, all in one query: 1 up, anything less down, nothing unknown."""
        deps = self.catalog.dependencies if deps is None else deps
        if not deps:
            return {}
        try:
            found = await self.batch({name: dep.check for name, dep in deps.items()})
        except PromError as exc:
            return {name: Reading(None, str(exc)) for name in deps}
        return {
            name: Reading.of(min(samples, key=lambda s: s.value) if samples else None)
            for name, samples in found.items()
        }

    async def now_and_before(
        self, promql: str, ago: timedelta, *, key: str = "", at: datetime | None = None
    ) -> dict[str, Pair]:
        """`promql` now and `ago` earlier, in ONE range query of two points (step = `ago`): what
        `offset` does, for a whole expression — `offset` binds to each selector, and a template's
        selectors are the catalog's. Keyed by the label `key` ("" for a single series)."""
        end = (at or now()).replace(microsecond=0)
        step = int(ago.total_seconds())
        series = await self.range(promql, end - ago, end, step)
        half = end.timestamp() - step / 2
        out: dict[str, Pair] = {}
        for s in series:
            name = dict(s.labels).get(key, "") if key else ""
            later = [v for t, v in s.points if t > half]
            earlier = [v for t, v in s.points if t <= half]
            out[name] = Pair(_read(later), _read(earlier))
        return out

    async def compare(
        self, figures: Mapping[str, str], ago: timedelta, *, key: str = "service", at: datetime | None = None
    ) -> tuple[dict[str, dict[str, Pair]], tuple[str, ...]]:
        """Each figure now and `ago` earlier, one query per figure, run together; a figure whose
        query failed is empty and named in the problems ("requests: Prometheus unreachable")."""
        names = list(figures)
        results = await asyncio.gather(
            *(self.now_and_before(figures[n], ago, key=key, at=at) for n in names), return_exceptions=True
        )
        found: dict[str, dict[str, Pair]] = {}
        problems: list[str] = []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, PromError):
                problems.append(f"{name}: {result}")
                found[name] = {}
            elif isinstance(result, BaseException):
                raise result
            else:
                found[name] = result
        return found, tuple(problems)

    async def business(
        self, window: str, ago: timedelta = timedelta(days=1), at: datetime | None = None
    ) -> dict[str, Pair]:
        """The catalog's business figures (platform totals) over `window`, now and `ago` earlier:
        one query per figure; a figure whose template is empty is left out, one that fails says why."""
        section = self.catalog.business
        templates = {
            name: text.replace("{window}", window)
            for name, text in (
                ("transactions", section.transactions),
                ("transaction_value", section.transaction_value),
                ("active_users", section.active_users),
            )
            if text.strip()
        }
        found, problems = await self.compare(templates, ago, key="", at=at)
        failed = dict(p.split(": ", 1) for p in problems)
        missing = Pair(Reading(None, "no data"), Reading(None, "no data"))
        return {
            name: Pair(Reading(None, failed[name]), Reading(None, failed[name]))
            if name in failed
            else found[name].get("", missing)
            for name in templates
        }

    async def peaks(
        self, period: str, span: str, at: datetime | None = None
    ) -> tuple[dict[str, dict[str, Reading]], str | None]:
        """Each service's highest CPU and memory use against its limits over `period`, each point
        averaged over `span` (a subquery of the catalog's ratios): one query."""
        exprs = {
            name: f"max_over_time(({self.expr(name, by='service', window=span)})[{period}:{span}])"
            for name in ("cpu", "memory")
        }
        try:
            found = await self.batch(exprs, at)
        except PromError as exc:
            return {}, str(exc)
        out: dict[str, dict[str, Reading]] = {}
        for name, samples in found.items():
            for s in samples:
                out.setdefault(s.labels.get("service", ""), {})[name] = Reading.of(s)
        return out, None

    async def by_label(self, promql: str, label: str, at: datetime | None = None) -> dict[str, Reading]:
        """An instant vector keyed by one label (a service, a container)."""
        return {s.labels.get(label, ""): Reading.of(s) for s in await self.vector(promql, at)}

    async def firing_alerts(self) -> Reading:
        try:
            result = await self.vector(self.catalog.promql.alerts)
        except PromError as exc:
            return Reading(None, str(exc))
        return Reading.of(result[0] if result else None)


def _figures(
    found: Mapping[str, Sample | None], unavailable: Mapping[str, str] | None = None
) -> ServiceFigures:
    unavailable = unavailable or {}

    def read(name: str) -> Reading:
        if name in unavailable:
            return Reading(None, unavailable[name])
        return Reading.of(found.get(name))

    return ServiceFigures(
        rps=read("rps"),
        error_rate=read("error_rate"),
        p95_ms=read("p95").scaled(1000),
        p99_ms=read("p99").scaled(1000),
        availability=read("availability"),
        cpu=read("cpu"),
        memory=read("memory"),
    )


def _read(values: list[float]) -> Reading:
    if not values:
        return Reading(None, "no data")
    return Reading(None, "NaN") if math.isnan(values[-1]) else Reading(values[-1])


def now() -> datetime:
    return datetime.now(UTC)
