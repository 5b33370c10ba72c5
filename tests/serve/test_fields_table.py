"""docs/openai-fields.md lists exactly the request fields of the ``openai`` package's TypedDicts, each with a
status and tests that exist, so the table cannot drift from the client or from the tests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from openai.types import completion_create_params, embedding_create_params
from openai.types.chat import completion_create_params as chat_params

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "openai-fields.md"
SCHEMAS = {
    "/v1/completions": [completion_create_params.CompletionCreateParamsNonStreaming,
                        completion_create_params.CompletionCreateParamsStreaming],
    "/v1/chat/completions": [chat_params.CompletionCreateParamsNonStreaming,
                             chat_params.CompletionCreateParamsStreaming],
    "/v1/embeddings": [embedding_create_params.EmbeddingCreateParams],
}
ROW = re.compile(r"^\| `(\w+)` \| (supported|ignored|refused) \| (.+?) \| (.+) \|$")


def tables() -> dict[str, dict[str, tuple[str, list[str]]]]:
    """Per endpoint heading: field -> (status, tests)."""
    out: dict[str, dict[str, tuple[str, list[str]]]] = {}
    section = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = out.setdefault(line[3:].strip(), {})
        elif section is not None and line.startswith("| `"):
            row = ROW.match(line)
            assert row, f"malformed row: {line}"
            field, status, _, tests = row.groups()
            assert field not in section, f"{field} listed twice"
            section[field] = (status, [t.strip() for t in tests.split(",")])
    return out


@pytest.mark.parametrize("endpoint", list(SCHEMAS))
def test_the_table_lists_exactly_the_clients_fields(endpoint):
    fields = set().union(*(t.__required_keys__ | t.__optional_keys__ for t in SCHEMAS[endpoint]))
    listed = tables()[endpoint]
    assert set(listed) == fields, (sorted(fields - set(listed)), sorted(set(listed) - fields))


def test_every_named_test_exists():
    for rows in tables().values():
        for field, (_, tests) in rows.items():
            assert tests, field
            for test in tests:
                path, _, name = test.partition("::")
                assert name.startswith("test_") and (ROOT / path).is_file(), (field, test)
                assert re.search(rf"^def {name}\(", (ROOT / path).read_text(encoding="utf-8"), re.M), (field, test)
