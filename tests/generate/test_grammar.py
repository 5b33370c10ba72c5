"""Structured outputs: every output of a tiny random model, greedy or sampled, is JSON valid under its schema;
masks are exactly llguidance's; constrained and free rows batch together as they decode alone."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import llguidance
import pytest
import torch
from llguidance.torch import allocate_token_bitmask, fill_next_token_bitmask

from lmstack.cli import main
from lmstack.errors import LmstackError
from lmstack.generate import generate
from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.generate.grammar import CACHED_GRAMMARS, JSON_OPTIONS, Grammar, mask_rows, response_format_grammar
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model
from lmstack.text.tokenizer import IM_END, train_bpe

SCHEMAS = json.loads((Path(__file__).parent / "schemas.json").read_text(encoding="utf-8"))
TEXT = ["The river town of Kell trades salt and amber. 凯尔河镇以盐和琥珀贸易为生。", "hello world, 你好，世界！"] * 20
JSON_TEXT = [json.dumps(s, ensure_ascii=False) for s in SCHEMAS] * 2 + [
    '{"name":"Kell","age":12,"ok":true,"tags":["a","b"],"when":"2024-01-02","v":null}'] * 10
PROMPTS = ["hello", "The river town", "凯尔", "{"]
WIDTH = 416  # the model's logits are wider than the tokenizer's 400 ids: the extra ids must never come out
BUDGET = 120  # enough for every schema in schemas.json (each bounds its strings, numbers and arrays)
PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}


@pytest.fixture(scope="module")
def tok():
    """Byte-level BPE with JSON merges ('"],', '}},', ...), so tokens straddle JSON's structure."""
    return train_bpe(TEXT + JSON_TEXT, vocab_size=400)


def peaked(name: str, seed: int, **overrides):
    """A small random model whose next-token distributions are peaked and varied (weights scaled up)."""
    torch.manual_seed(seed)
    model = build_model(preset(name, n_layer=1, vocab_size=WIDTH, block_size=256, **overrides)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(4)
    return model


@pytest.fixture(scope="module")
def net():
    return peaked("gpt2-tiny", 2, n_head=2, n_embd=64)


def outputs(net, tok, grammars, config, prompts=PROMPTS, ends=()):
    """Each row's tokens up to its end token (eos or one of ``ends``; and whether it met one), the rows decoded
    as one batch."""
    ends = {tok.eos_id, *ends}
    rows = [tok.encode(prompts[i % len(prompts)]) for i in range(len(grammars))]
    constraints = [None if g is None else g.constraint() for g in grammars]
    steps = torch.stack(list(decode(net, rows, config, tok.eos_id, constraints)), dim=1).tolist()
    cut = [next((k for k, t in enumerate(row) if t in ends), None) for row in steps]
    return [(row, False) if k is None else (row[:k], True) for row, k in zip(steps, cut)]


@pytest.mark.parametrize("config", [GenerationConfig(max_new_tokens=BUDGET),
                                    GenerationConfig(max_new_tokens=BUDGET, do_sample=True, seed=0)],
                         ids=["greedy", "sampled"])
def test_every_output_parses_and_validates_under_its_schema(net, tok, config):
    assert len(SCHEMAS) >= 50
    grammars = [Grammar.from_json_schema(s, tok, {tok.eos_id}) for s in SCHEMAS]
    for schema, (ids, ended) in zip(SCHEMAS, outputs(net, tok, grammars, config)):
        text = tok.decode(ids)
        assert ended, (schema, text)  # the budget sufficed: the value was complete and the row ended
        assert max(ids, default=0) < tok.vocab_size
        jsonschema.validate(json.loads(text), schema)
        assert not any(c in text for c in "\n\t") and ", " not in text.replace('", "', "")  # compact


def test_json_object_mode_gives_an_object_and_text_mode_nothing(net, tok):
    grammar = response_format_grammar({"type": "json_object"}, tok, {tok.eos_id})
    config = GenerationConfig(max_new_tokens=200, do_sample=True, seed=1)
    results = outputs(net, tok, [grammar] * 8, config)  # keys and strings are free: a random model rambles
    assert sum(ended for _, ended in results) >= 6
    assert all(isinstance(json.loads(tok.decode(ids)), dict) for ids, ended in results if ended)
    assert all(tok.decode(ids).startswith('{"') for ids, ended in results if not ended)
    assert response_format_grammar({"type": "text"}, tok, {tok.eos_id}) is None
    shaped = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    assert response_format_grammar(shaped, tok, {tok.eos_id}) is Grammar.from_json_schema(
        PERSON, tok, {tok.eos_id})  # compiled once, from the cache


@pytest.mark.parametrize(("response_format", "message"), [
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "not": {"required": ["a"]}}}},
     "response_format.json_schema.schema: the schema uses 'not', which structured outputs do not support"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"if": {"type": "string"}, "then": {}}}},
     "response_format.json_schema.schema: the schema uses 'if', 'then', which structured outputs do not support"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer", "minimum": 5, "maximum": 3}}},
     "response_format.json_schema.schema: cannot be used for structured outputs: Unsatisfiable schema: minimum (5) "
     "is greater than maximum (3)"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/$defs/missing"}}},
     "response_format.json_schema.schema: cannot be used for structured outputs: Pointer '/$defs/missing' does not "
     "exist"),
    ({"type": "xml"}, "response_format.type: expected 'text', 'json_object' or 'json_schema', got 'xml'"),
    ({"type": "json_schema"}, "response_format.json_schema: expected an object with name and schema, got nothing"),
    ({"type": "json_schema", "json_schema": {"schema": {}}},
     "response_format.json_schema.name: expected a non-empty string, got None"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": [1]}},
     "response_format.json_schema.schema: expected a JSON object, got list"),
    ({"type": "json_schema", "json_schema": {"name": "x", "strict": "yes"}},
     "response_format.json_schema.strict: expected true or false, got 'yes'"),
    ("json", "response_format: expected an object, got str"),
])
def test_bad_response_formats_are_one_line_errors_naming_the_field(tok, response_format, message):
    with pytest.raises(LmstackError) as err:
        response_format_grammar(response_format, tok, {tok.eos_id})
    assert str(err.value) == message


def test_the_mask_is_llguidances_bitmask_with_every_end_token_standing_for_eos(net, tok):
    im_end = tok.token_to_id(IM_END)
    grammar = Grammar.from_json_schema(PERSON, tok, {tok.eos_id, im_end})
    (path, ended), = outputs(net, tok, [grammar], GenerationConfig(max_new_tokens=60), ends={im_end})
    assert ended and json.loads(tok.decode(path))["age"] <= 120  # the model may end at either end token
    reference = llguidance.LLMatcher(llguidance.LLTokenizer(tok.backend.to_str(), n_vocab=tok.vocab_size,
                                                            eos_token=[tok.eos_id]),
                                     llguidance.LLMatcher.grammar_from_json_schema(PERSON, defaults=JSON_OPTIONS))
    bitmask = allocate_token_bitmask(1, tok.vocab_size)
    constraint, other = grammar.constraint(), grammar.constraint()
    start = constraint.mask(torch.zeros(WIDTH))
    for token in path + [im_end]:
        fill_next_token_bitmask(reference, bitmask)
        bits = [bool(bitmask[0, i // 32] >> (i % 32) & 1) for i in range(tok.vocab_size)]
        expected = bits[:] + [False] * (WIDTH - tok.vocab_size)
        expected[im_end] = bits[tok.eos_id]
        scores = torch.randn(1, WIDTH)
        masked = constraint.mask(scores)
        assert (masked > -float("inf")).squeeze(0).tolist() == expected
        assert torch.equal(masked[0, torch.tensor(expected)], scores[0, torch.tensor(expected)])  # the rest as is
        assert torch.equal(mask_rows(scores.expand(2, -1), [constraint, None])[0], masked[0])
        assert constraint.accepting == ({i for i, b in enumerate(expected) if b} == {tok.eos_id, im_end})
        constraint.advance(token)
        assert reference.consume_token(tok.eos_id if token == im_end else token)
    assert constraint.accepting
    assert torch.equal(other.mask(torch.zeros(WIDTH)), start)  # a sibling is untouched: still at the start


def test_a_forbidden_token_is_refused_and_leaves_the_state_as_it_was(tok):
    constraint = Grammar.from_json_schema(PERSON, tok, {tok.eos_id}).constraint()
    with pytest.raises(LmstackError, match=f"token {tok.token_to_id('a')} is not allowed by the output's grammar"):
        constraint.advance(tok.token_to_id("a"))  # 'a' cannot start an object
    ids = tok.encode('{"name":"Kell","age":7}')
    for token in ids:
        constraint.advance(token)
    assert constraint.accepting
    allowed = (constraint.mask(torch.zeros(tok.vocab_size)) > -float("inf")).nonzero().flatten().tolist()
    assert allowed == [tok.eos_id]  # complete: only the end token now
    with pytest.raises(LmstackError, match="not allowed"):
        constraint.advance(ids[0])


def test_one_grammar_serves_many_threads_and_the_cache_keeps_the_most_recent(tok):
    grammar = Grammar.from_json_schema(PERSON, tok, {tok.eos_id})
    path = tok.encode('{"name":"Kell","age":7}') + [tok.eos_id]

    def walk(_):
        constraint, masks = grammar.constraint(), []
        for token in path:
            masks.append(constraint.allowed().clone())
            constraint.advance(token)
        return torch.stack(masks)

    with ThreadPoolExecutor(8) as pool:
        walks = list(pool.map(walk, range(16)))
    assert all(torch.equal(w, walks[0]) for w in walks)
    assert Grammar.from_json_schema(PERSON, tok, {tok.eos_id, 3}) is not grammar  # other end tokens, other grammar
    for k in range(CACHED_GRAMMARS):
        Grammar.from_json_schema({"const": k}, tok, {tok.eos_id})
    assert Grammar.from_json_schema({"const": CACHED_GRAMMARS - 1}, tok, {tok.eos_id}) is Grammar.from_json_schema(
        {"const": CACHED_GRAMMARS - 1}, tok, {tok.eos_id})
    assert Grammar.from_json_schema(PERSON, tok, {tok.eos_id}) is not grammar  # dropped: least recently used


def test_mixed_constrained_and_free_rows_decode_as_each_alone(net, tok):
    grammars = [Grammar.from_json_schema(PERSON, tok, {tok.eos_id}), None,
                Grammar.from_json_schema(SCHEMAS[40], tok, {tok.eos_id}), None]
    prompts = ["hello", "The river town of Kell", "凯", "{"]
    config = GenerationConfig(max_new_tokens=40)
    together = outputs(net, tok, grammars, config, prompts)
    for row, (grammar, prompt) in enumerate(zip(grammars, prompts)):
        assert outputs(net, tok, [grammar], config, [prompt]) == [together[row]]
    assert [ended for _, ended in together][::2] == [True, True]  # the constrained rows ended, with valid JSON
    jsonschema.validate(json.loads(tok.decode(together[0][0])), PERSON)
    free = outputs(net, tok, [None], config, [prompts[0]])[0][0]
    assert free != together[0][0]  # the constraint changed what row 0 says


def test_generate_with_a_json_schema_and_a_lark_grammar(net, tok):
    texts = generate(net, tok, PROMPTS, json_schema=PERSON, max_new_tokens=60, do_sample=True, seed=1)
    for text in texts:
        jsonschema.validate(json.loads(text), PERSON)
    assert generate(net, tok, PROMPTS, json_schema=PERSON, max_new_tokens=60) == [
        tok.decode(ids) for ids, _ in outputs(net, tok, [Grammar.from_json_schema(PERSON, tok, {tok.eos_id})] * 4,
                                               GenerationConfig(max_new_tokens=60))]
    for text in generate(net, tok, PROMPTS, json_schema=PERSON, max_new_tokens=60, min_new_tokens=50,
                         repetition_penalty=1.3):  # the grammar's end outranks min_new_tokens
        jsonschema.validate(json.loads(text), PERSON)
    yes_no = Grammar.from_lark('start: "yes" | "no" | "maybe so"', tok, {tok.eos_id})
    answers = [tok.decode(ids) for ids, ended in outputs(net, tok, [yes_no] * 6, GenerationConfig(
        max_new_tokens=20, do_sample=True, seed=4))]
    assert set(answers) <= {"yes", "no", "maybe so"} and len(set(answers)) > 1
    with pytest.raises(LmstackError, match="^grammar: cannot be used for structured outputs: .*start"):
        Grammar.from_lark("start: missing_rule", tok, {tok.eos_id})
    with pytest.raises(LmstackError, match="beam search does not support structured outputs"):
        generate(net, tok, "hi", json_schema=PERSON, num_beams=2)


@pytest.fixture(scope="module")
def model_dir(net, tok, tmp_path_factory):
    return save_model(net, tmp_path_factory.mktemp("model"), tokenizer=tok)


@pytest.mark.parametrize("flags", [[], ["--chat"], ["--do-sample", "--seed", "5", "--top-p", "0.9"]])
def test_cli_json_schema(model_dir, tmp_path, capsys, flags):
    schema = tmp_path / "person.json"
    schema.write_text(json.dumps(PERSON))
    main(["generate", "hello", "The river", "凯尔", "--model", str(model_dir), "--json-schema", str(schema),
          "--max-new-tokens", "60", "--json", *flags])
    result = json.loads(capsys.readouterr().out)
    assert len(result["completion"]) == 3
    for text in result["completion"]:
        jsonschema.validate(json.loads(text), PERSON)


@pytest.mark.parametrize(("content", "message"), [
    (None, "{file}: file not found"),
    ("{not json", "{file}: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
                  "(char 1))"),
    ("[1]", "{file}: a JSON schema must be a JSON object, got list"),
    ('{"type": "string", "contains": {}}', "{file}: the schema uses 'contains', which structured outputs do not "
                                           "support"),
])
def test_cli_bad_schema_file_is_a_one_line_error_naming_it(model_dir, tmp_path, capsys, content, message):
    schema = tmp_path / "schema.json"
    if content is not None:
        schema.write_text(content)
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "hello", "--model", str(model_dir), "--json-schema", str(schema)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"lmstack generate: error: {message.format(file=schema)}"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 6))
def test_sweep_more_seeds_and_temperatures(net, tok, seed):
    grammars = [Grammar.from_json_schema(s, tok, {tok.eos_id}) for s in SCHEMAS]
    config = GenerationConfig(max_new_tokens=200, do_sample=True, seed=seed, temperature=0.5 + 0.4 * seed, top_k=50)
    for schema, (ids, ended) in zip(SCHEMAS, outputs(net, tok, grammars, config, PROMPTS[seed % 4:] + PROMPTS)):
        assert ended, schema
        jsonschema.validate(json.loads(tok.decode(ids)), schema)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3, 7))
def test_sweep_greedy_over_other_random_models(tok, seed):
    model = peaked("llama-tiny", seed)
    grammars = [Grammar.from_json_schema(s, tok, {tok.eos_id}) for s in SCHEMAS]
    for schema, (ids, ended) in zip(SCHEMAS, outputs(model, tok, grammars, GenerationConfig(max_new_tokens=200))):
        assert ended, schema
        jsonschema.validate(json.loads(tok.decode(ids)), schema)
