"""Fuzz the API from its own OpenAPI document: any body, valid or not, gets a 2xx or 4xx, never a 5xx."""

from __future__ import annotations

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import API_KEY

ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
JUNK = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40)
                    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                    max_leaves=8)


def from_schema(schema: dict, defs: dict, depth: int = 0) -> st.SearchStrategy:
    """Values that mostly follow ``schema`` (sometimes junk instead), with small numbers to stay quick."""
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].split("/")[-1]], defs, depth)
    if depth > 4:
        return st.none()
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return st.one_of([from_schema(s, defs, depth + 1) for s in options])
    if "enum" in schema or "const" in schema:
        return st.sampled_from(schema.get("enum") or [schema["const"]])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v, defs, depth + 1) for k, v in props.items() if k in required},
            optional={k: from_schema(v, defs, depth + 1) for k, v in props.items() if k not in required})
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), defs, depth + 1), max_size=3)
    if kind == "integer":
        return st.integers(schema.get("minimum", -3), min(schema.get("maximum", 8), 8))
    if kind == "number":
        return st.floats(-1, 3, allow_nan=False)
    if kind == "string":
        return st.sampled_from(["tiny", "hello", "你好", ""]) | st.text(max_size=12)
    if kind == "boolean":
        return st.booleans()
    return JUNK


@pytest.fixture(scope="module")
def api(server):
    doc = httpx2.get(server + "/openapi.json").json()
    defs = doc["components"]["schemas"]
    bodies = {route: from_schema(doc["paths"][route]["post"]["requestBody"]["content"]["application/json"]["schema"],
                                 defs) for route in ROUTES}
    return server, bodies


def test_no_body_makes_the_server_fail(api):
    server, bodies = api
    client = httpx2.Client(base_url=server, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(route=st.sampled_from(ROUTES), data=st.data(), junk=st.booleans())
    def check(route, data, junk):
        body = data.draw(JUNK if junk else bodies[route])
        response = client.post(route, json=body)
        assert response.status_code < 500, (route, body, response.text)
        if response.status_code >= 400:
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}

    check()
    assert client.get("/health").json()["status"] == "ok"
