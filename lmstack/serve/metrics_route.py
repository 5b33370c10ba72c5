"""``GET /metrics``: the server's counters in Prometheus' text exposition format (version 0.0.4), for a scraper.

    lmstack_http_requests_total{route,method,status}     counter    every answered request (404s as route "unmatched")
    lmstack_http_request_duration_seconds{route}         histogram  request to last response byte (streams included)
    lmstack_prompt_tokens_total                          counter    prompt tokens the model read (prefills, scoring)
    lmstack_generation_tokens_total                      counter    tokens decoded (end tokens included)
    lmstack_requests_running / _waiting, lmstack_slots   gauges     the engine's batch, its queue, its cache slots
    lmstack_engine_steps_total                           counter    batched decoding steps
    lmstack_time_to_first_token_seconds                  histogram  queued decoding to its first token
    lmstack_request_latency_seconds                      histogram  queued decoding to its end
    lmstack_request_finished_total{finish}               counter    decodings by how they ended (stop, length, ...)

Histogram buckets are vLLM's. Written with the standard library: the format is a few lines of text, and each app
keeps its own registry (``prometheus_client``'s process-wide default registry would mix the apps that tests and
embedders start in one process). Like ``/health`` it needs no API key, as in vLLM: a scraper reads it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from lmstack.serve.engine import Engine, Event

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                   480.0, 960.0, 1920.0, 7680.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Histogram:
    """Cumulative buckets (upper bounds ``le``), their sum and count, as Prometheus histograms are exposed."""

    def __init__(self, buckets: tuple[float, ...]):
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * len(self.bounds)
        self.sum, self.count = 0.0, 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
        self.sum += value
        self.count += 1


class ServerMetrics:
    """What the routes and the engine's events record; thread-safe (events arrive on the engine thread)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: Counter[tuple[str, str, str]] = Counter()  # (route, method, status) -> count
        self.http_seconds: dict[str, Histogram] = {}
        self.ttft = Histogram(TTFT_BUCKETS)
        self.latency = Histogram(LATENCY_BUCKETS)
        self.finished: Counter[str] = Counter()

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[route, method, str(status)] += 1
            self.http_seconds.setdefault(route, Histogram(HTTP_BUCKETS)).observe(seconds)

    def timed(self, emit: Callable[[Event], None]) -> Callable[[Event], None]:
        """``emit`` that also records the decoding's time to first token and, at its end, its latency and finish."""
        start, first = time.perf_counter(), [True]

        def observe(event: Event) -> None:
            now = time.perf_counter() - start
            with self.lock:
                if event.token is not None and first[0]:
                    first[0] = False
                    self.ttft.observe(now)
                if event.finish:
                    self.latency.observe(now)
                    self.finished[event.finish] += 1
            emit(event)
        return observe

    def render(self, engine: Engine) -> str:
        """The exposition text: the recorded series and the engine's live counts."""
        stats = engine.stats()
        out: list[str] = []

        def family(name: str, kind: str, help_: str, samples: list[tuple[str, dict[str, str], float]]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{sample}{_labels(labels)} {_number(value)}" for sample, labels, value in samples)

        with self.lock:
            family("lmstack_http_requests_total", "counter", "HTTP requests answered, by route, method and status.",
                   [("lmstack_http_requests_total", {"route": r, "method": m, "status": s}, n)
                    for (r, m, s), n in sorted(self.requests.items())])
            family("lmstack_http_request_duration_seconds", "histogram",
                   "Seconds from a request to the last byte of its response, by route.",
                   [s for route, h in sorted(self.http_seconds.items())
                    for s in _histogram("lmstack_http_request_duration_seconds", h, {"route": route})])
            family("lmstack_time_to_first_token_seconds", "histogram",
                   "Seconds from queueing a decoding to its first token.",
                   _histogram("lmstack_time_to_first_token_seconds", self.ttft, {}))
            family("lmstack_request_latency_seconds", "histogram", "Seconds from queueing a decoding to its end.",
                   _histogram("lmstack_request_latency_seconds", self.latency, {}))
            family("lmstack_request_finished_total", "counter", "Decodings ended, by how they ended.",
                   [("lmstack_request_finished_total", {"finish": f}, n) for f, n in sorted(self.finished.items())])
        family("lmstack_prompt_tokens_total", "counter", "Prompt tokens read by the model (prefills and scoring).",
               [("lmstack_prompt_tokens_total", {}, stats["prompt_tokens"])])
        family("lmstack_generation_tokens_total", "counter", "Tokens decoded.",
               [("lmstack_generation_tokens_total", {}, stats["generated_tokens"])])
        family("lmstack_requests_running", "gauge", "Decodings in the engine's batch.",
               [("lmstack_requests_running", {}, stats["running"])])
        family("lmstack_requests_waiting", "gauge", "Decodings waiting for a cache slot.",
               [("lmstack_requests_waiting", {}, stats["waiting"])])
        family("lmstack_slots", "gauge", "Cache slots (decodings batched together at most).",
               [("lmstack_slots", {}, stats["slots"])])
        family("lmstack_engine_steps_total", "counter", "Batched decoding steps.",
               [("lmstack_engine_steps_total", {}, stats["steps"])])
        return "\n".join(out) + "\n"


def _histogram(name: str, h: Histogram, labels: dict[str, str]) -> list[tuple[str, dict[str, str], float]]:
    rows = [(f"{name}_bucket", {**labels, "le": _number(b)}, c) for b, c in zip(h.bounds, h.counts)]
    rows.append((f"{name}_bucket", {**labels, "le": "+Inf"}, h.count))
    return rows + [(f"{name}_sum", labels, h.sum), (f"{name}_count", labels, h.count)]


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _escape(value: str) -> str:
    """A label value as the text format writes it: backslash, double quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class CountRequests:
    """ASGI middleware: each HTTP request's route (its path template), method, status and duration."""

    def __init__(self, app: Any, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def send_counted(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            route = scope.get("route")
            self.metrics.request(getattr(route, "path", "unmatched"), scope["method"], status[0],
                                 time.perf_counter() - start)


def router(metrics: ServerMetrics, engine: Engine) -> APIRouter:
    routes = APIRouter()

    @routes.get("/metrics", response_class=PlainTextResponse)
    async def scrape() -> PlainTextResponse:
        """The counters, gauges and histograms in Prometheus' text format."""
        return PlainTextResponse(metrics.render(engine), media_type=CONTENT_TYPE)

    return routes
