"""``GET /metrics``: the text parses as Prometheus' exposition format (a minimal parser of its grammar here), each
sample belongs to a declared family, histograms are cumulative, and the counters rise by exactly what requests
did: HTTP requests by route and status, prompt and generated tokens, decodings, engine steps."""

from __future__ import annotations

import math
import re

import httpx2
import pytest

from lmstack.serve.metrics_route import CONTENT_TYPE, _labels

from .conftest import live_app, tape_model

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = rf'({NAME})="((?:[^"\\\n]|\\[\\"n])*)"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL},?)*)\}})? (\S+)$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse(text: str) -> tuple[dict[str, str], dict[tuple[str, frozenset], float]]:
    """Families (name -> type) and samples ((name, labels) -> value) of a text exposition; asserts its grammar."""
    families, samples = {}, {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in TYPES and name not in families, line
            families[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.group(1), match.group(2) or "", match.group(match.lastindex)
        pairs = frozenset((k, re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m[1], m[1]), v))
                          for k, v in re.findall(LABEL, labels))
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in families else name
        assert family in families, f"{name} has no # TYPE line"
        assert (name, pairs) not in samples, f"duplicate series {line}"
        samples[name, pairs] = float(value.replace("+Inf", "inf"))
    return families, samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(url: str) -> tuple[dict[str, str], dict]:
    reply = httpx2.get(url + "/metrics", timeout=30)
    assert reply.status_code == 200 and reply.headers["content-type"] == CONTENT_TYPE
    return parse(reply.text)


def check_histograms(families: dict[str, str], samples: dict) -> None:
    for name, kind in families.items():
        if kind != "histogram":
            continue
        series: dict[frozenset, list[tuple[float, float]]] = {}
        for (sample, labels), v in samples.items():
            if sample == name + "_bucket":
                le = dict(labels)["le"]
                series.setdefault(frozenset(p for p in labels if p[0] != "le"), []).append(
                    (math.inf if le == "+Inf" else float(le), v))
        for rest, buckets in series.items():
            counts = [c for _, c in sorted(buckets)]
            assert counts == sorted(counts) and sorted(buckets)[-1][0] == math.inf, (name, buckets)
            assert counts[-1] == samples[name + "_count", rest] and samples[name + "_sum", rest] >= 0


def test_label_values_are_escaped_as_the_format_says():
    line = "x" + _labels({"route": 'a"b\\c\nd', "status": "200"}) + " 1"
    assert line == 'x{route="a\\"b\\\\c\\nd",status="200"} 1'
    samples = parse("# TYPE x counter\n" + line + "\n")[1]
    assert value(samples, "x", route='a"b\\c\nd', status="200") == 1


@pytest.fixture(scope="module")
def url(tokenizer):
    with live_app(tape_model(tokenizer), tokenizer, slots=4) as base:
        yield base


def test_counters_rise_by_what_the_requests_did(url, tokenizer):
    families, before = scrape(url)
    assert families["lmstack_http_requests_total"] == "counter" and families["lmstack_slots"] == "gauge"
    assert value(before, "lmstack_slots") == 4 and value(before, "lmstack_requests_running") == 0
    prompts = [tokenizer.encode("hello world"), tokenizer.encode("凯尔河镇")]
    no_eos = {str(tokenizer.eos_id): -100}
    generated = httpx2.post(url + "/v1/completions", timeout=60, json={
        "model": "tiny", "prompt": prompts, "max_tokens": 4, "temperature": 0, "logit_bias": no_eos}).json()
    assert [c["finish_reason"] for c in generated["choices"]] == ["length", "length"]
    scored = httpx2.post(url + "/v1/completions", timeout=60, json={
        "model": "tiny", "prompt": prompts, "max_tokens": 0, "echo": True, "logprobs": 0})
    assert scored.status_code == 200
    assert httpx2.get(url + "/nowhere").status_code == 404
    assert httpx2.post(url + "/v1/completions", json={"model": "tiny"}).status_code == 400
    families, after = scrape(url)
    check_histograms(families, after)

    def rise(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"route": "/v1/completions", "method": "POST", "status": "200"}
    assert rise("lmstack_http_requests_total", **ok) == 2
    assert rise("lmstack_http_requests_total", **{**ok, "status": "400"}) == 1
    assert rise("lmstack_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert rise("lmstack_http_requests_total", route="/metrics", method="GET", status="200") == 1  # the first scrape
    assert rise("lmstack_http_request_duration_seconds_count", route="/v1/completions") == 3
    n = sum(map(len, prompts))
    assert rise("lmstack_prompt_tokens_total") == 2 * n  # prefilled once, scored once
    assert rise("lmstack_generation_tokens_total") == 8
    assert rise("lmstack_time_to_first_token_seconds_count") == 2
    assert rise("lmstack_request_latency_seconds_count") == 2
    assert rise("lmstack_request_finished_total", finish="length") == 2
    assert 3 <= rise("lmstack_engine_steps_total") <= 6  # 4 tokens each: the first from prefill, then batched steps
    assert value(after, "lmstack_requests_running") == value(after, "lmstack_requests_waiting") == 0


def test_requests_refused_before_any_route_are_counted(tokenizer):
    with live_app(tape_model(tokenizer), tokenizer, api_key="k", max_body=2000) as base:
        assert httpx2.get(base + "/v1/models").status_code == 401
        assert httpx2.post(base + "/v1/completions", content=b"x" * 5000,
                           headers={"content-type": "application/json"}).status_code == 413
        assert httpx2.get(base + "/metrics").status_code == 200  # no key needed, as /health
        _, samples = scrape(base)
    assert value(samples, "lmstack_http_requests_total", route="/v1/models", method="GET", status="401") == 1
    assert value(samples, "lmstack_http_requests_total", route="unmatched", method="POST", status="413") == 1
    assert value(samples, "lmstack_http_requests_total", route="/metrics", method="GET", status="200") == 1
