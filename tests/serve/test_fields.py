"""Every OpenAI request field with a meaning here, through the official ``openai`` client against the app served
in this process: penalties and logit bias against a hand-written decoding loop, echo and ``max_tokens: 0``
scoring against ``model.scoring``, token-id prompts and inputs, streaming usage and logprobs, the end token left
out of usage, ignored and unknown fields."""

from __future__ import annotations

import json
import logging

import httpx2
import openai
import pytest
import torch

from lmstack.generate.api import generate
from lmstack.model.scoring import token_logprobs

from .conftest import TOOL_MESSAGES, TOOL_REPLY, TOOLS, live_app, tape_model

HELLO = [{"role": "user", "content": "hello 你好"}]


@pytest.fixture(scope="module")
def model(tokenizer):
    return tape_model(tokenizer)


@pytest.fixture(scope="module")
def client(live) -> openai.OpenAI:
    return openai.OpenAI(base_url=live + "/v1", api_key="none", max_retries=0, timeout=60)


def post(url: str, path: str, body: dict) -> httpx2.Response:
    return httpx2.post(url + path, json=body, timeout=60)


def reference(model, ids: list[int], n: int, frequency: float = 0.0, presence: float = 0.0,
              bias: dict[int, float] | None = None) -> list[int]:
    """Greedy decoding written out: logit - f * count - p * (count > 0) + bias, over the tokens generated so far."""
    out: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids + out]))[0, -1].clone()
            for token in set(out):
                logits[token] -= frequency * out.count(token) + presence
            for token, b in (bias or {}).items():
                logits[token] += b
            out.append(int(logits.argmax()))
    return out


def test_frequency_and_presence_penalties_follow_openai_formula(client, model, tokenizer):
    ids = tokenizer.encode("hello")
    plain = reference(model, ids, 24)
    penalised = reference(model, ids, 24, frequency=1.5, presence=0.8)
    assert plain != penalised  # the penalties change this greedy decoding
    reply = client.completions.create(model="tiny", prompt="hello", max_tokens=24, temperature=0,
                                      frequency_penalty=1.5, presence_penalty=0.8)
    assert reply.choices[0].text == tokenizer.decode(penalised)
    assert generate(model, tokenizer, "hello", max_new_tokens=24, frequency_penalty=1.5,
                    presence_penalty=0.8) == tokenizer.decode(penalised)
    zero = client.completions.create(model="tiny", prompt="hello", max_tokens=24, temperature=0,
                                     frequency_penalty=0, presence_penalty=0)  # what LangChain always sends
    assert zero.choices[0].text == tokenizer.decode(plain)
    chat = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=8, temperature=0,
                                          frequency_penalty=-0.5, presence_penalty=2)
    assert chat.choices[0].finish_reason in ("stop", "length")


def test_logit_bias_forces_and_bans_tokens(client, model, tokenizer):
    token = tokenizer.encode(" amber")[-1]
    forced = client.completions.create(model="tiny", prompt="hello", max_tokens=4, temperature=0,
                                       logit_bias={str(token): 100})
    assert forced.choices[0].text == tokenizer.decode([token] * 4)
    ids = tokenizer.encode("hello")
    first = reference(model, ids, 1)[0]
    banned = client.completions.create(model="tiny", prompt="hello", max_tokens=6, temperature=0,
                                       logit_bias={str(first): -100, "7": 3.5})
    assert banned.choices[0].text == tokenizer.decode(reference(model, ids, 6, bias={first: -100, 7: 3.5}))
    chat = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=3, temperature=0,
                                          logit_bias={str(token): 100})
    assert chat.choices[0].message.content == tokenizer.decode([token] * 3)


def test_echo_with_max_tokens_zero_scores_the_prompt_as_lm_eval_asks(client, model, tokenizer):
    """lm-evaluation-harness's local-completions loglikelihood request, exactly."""
    a, b = tokenizer.encode("The river town of Kell"), tokenizer.encode("hello world, 你好")
    reply = client.completions.create(model="tiny", prompt=[a, b], max_tokens=0, echo=True, logprobs=1,
                                      temperature=0)
    with torch.no_grad():
        expected = token_logprobs(model, [a[:1], b[:1]], [a[1:], b[1:]])
    assert [c.index for c in reply.choices] == [0, 1]
    for choice, ids, exp in zip(reply.choices, (a, b), expected):
        lp = choice.logprobs
        assert choice.text == tokenizer.decode(ids) and choice.finish_reason == "length"
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        assert lp.token_logprobs[1:] == pytest.approx(exp.tolist(), abs=1e-4)
        assert lp.tokens == [tokenizer.decode([t]) for t in ids]
        for k, top in enumerate(lp.top_logprobs[1:]):  # logprobs=1: the most likely token, at most as likely
            assert len(top) == 1 and list(top.values())[0] >= lp.token_logprobs[k + 1] - 1e-5
    assert reply.usage.prompt_tokens == len(a) + len(b) and reply.usage.completion_tokens == 0


def test_echo_prefixes_the_prompt_to_a_generation(client, tokenizer):
    plain = client.completions.create(model="tiny", prompt="hello", max_tokens=5, temperature=0, logprobs=2)
    echoed = client.completions.create(model="tiny", prompt="hello", max_tokens=5, temperature=0, logprobs=2,
                                       echo=True)
    n = len(tokenizer.encode("hello"))
    assert echoed.choices[0].text == "hello" + plain.choices[0].text
    lp = echoed.choices[0].logprobs
    assert len(lp.tokens) == n + 5 and lp.token_logprobs[0] is None
    assert lp.token_logprobs[n:] == pytest.approx(plain.choices[0].logprobs.token_logprobs, abs=1e-5)
    assert lp.text_offset[n] == len("hello")
    assert echoed.usage.completion_tokens == plain.usage.completion_tokens == 5


def test_token_id_prompts_and_several_prompts_give_indexed_choices(client, model, tokenizer):
    ids = tokenizer.encode("凯尔河镇")
    as_text = client.completions.create(model="tiny", prompt="凯尔河镇", max_tokens=6, temperature=0)
    as_ids = client.completions.create(model="tiny", prompt=ids, max_tokens=6, temperature=0)
    assert as_ids.choices[0].text == as_text.choices[0].text
    other = tokenizer.encode("hello")
    many = client.completions.create(model="tiny", prompt=[ids, other], max_tokens=6, n=2, temperature=0,
                                     best_of=2)
    assert [c.index for c in many.choices] == [0, 1, 2, 3]
    expected = generate(model, tokenizer, [ids, other], max_new_tokens=6)
    assert [c.text for c in many.choices] == [expected[0]] * 2 + [expected[1]] * 2
    assert many.usage.prompt_tokens == len(ids) + len(other)


def test_completion_stream_sends_logprobs_echo_and_a_usage_chunk(client):
    kw = {"model": "tiny", "prompt": "hello", "max_tokens": 8, "temperature": 0, "logprobs": 2}
    plain = client.completions.create(**kw)
    chunks = list(client.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == plain.usage.model_dump()
    body = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].text for c in body) == plain.choices[0].text
    streamed = [x for c in body if c.choices[0].logprobs for x in c.choices[0].logprobs.token_logprobs]
    assert streamed == pytest.approx(plain.choices[0].logprobs.token_logprobs, abs=1e-6)
    assert body[-1].choices[0].finish_reason == plain.choices[0].finish_reason
    echo = list(client.completions.create(**kw, echo=True, stream=True))
    assert "".join(c.choices[0].text for c in echo) == "hello" + plain.choices[0].text
    scored = list(client.completions.create(model="tiny", prompt="hello", max_tokens=0, echo=True, logprobs=0,
                                            stream=True))
    assert [c.choices[0].text for c in scored] == ["hello"] and scored[0].choices[0].finish_reason == "length"


def test_usage_leaves_out_the_end_token_that_is_not_returned(client, tokenizer):
    eos = str(tokenizer.eos_id)
    ended = client.completions.create(model="tiny", prompt="hello", max_tokens=5, temperature=0,
                                      logit_bias={eos: 100})
    assert ended.choices[0].text == "" and ended.choices[0].finish_reason == "stop"
    assert ended.usage.completion_tokens == 0
    chunks = list(client.completions.create(model="tiny", prompt="hello", max_tokens=5, temperature=0,
                                            logit_bias={eos: 100}, stream=True,
                                            stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == 0
    call = client.chat.completions.create(model="tiny", messages=TOOL_MESSAGES, tools=TOOLS, temperature=0)
    assert call.choices[0].finish_reason == "tool_calls"
    assert call.usage.completion_tokens == len(tokenizer.encode(TOOL_REPLY))  # <|im_end|> not counted
    streamed = list(client.chat.completions.create(model="tiny", messages=TOOL_MESSAGES, tools=TOOLS, temperature=0,
                                                   stream=True, stream_options={"include_usage": True}))
    assert streamed[-1].usage.completion_tokens == call.usage.completion_tokens


def test_embeddings_take_token_ids_and_only_their_own_width(client, tokenizer, live):
    ids = tokenizer.encode("凯尔河镇")
    by_text = client.embeddings.create(model="tiny", input=["凯尔河镇", "hello"], encoding_format="float")
    by_ids = client.embeddings.create(model="tiny", input=[ids, tokenizer.encode("hello")], encoding_format="float",
                                      dimensions=128, user="someone")
    one = client.embeddings.create(model="tiny", input=ids, encoding_format="float")
    assert torch.allclose(torch.tensor([d.embedding for d in by_ids.data]),
                          torch.tensor([d.embedding for d in by_text.data]), atol=1e-6)
    assert one.data[0].embedding == pytest.approx(by_text.data[0].embedding, abs=1e-6)
    error = post(live, "/v1/embeddings", {"model": "tiny", "input": "hello", "dimensions": 64}).json()["error"]
    assert error["param"] == "dimensions" and "128 dimensions" in error["message"]
    error = post(live, "/v1/embeddings", {"model": "tiny", "input": [[1, 99999]]}).json()["error"]
    assert error["param"] == "input" and "outside the vocabulary" in error["message"]


IGNORED = {"store": True, "metadata": {"k": "v"}, "user": "u1", "service_tier": "auto", "prompt_cache_key": "x",
           "prompt_cache_options": {"mode": "implicit"}, "prompt_cache_retention": "24h", "reasoning_effort": "low",
           "safety_identifier": "s", "verbosity": "low", "modalities": ["text"],
           "prediction": {"type": "content", "content": "hi"}, "parallel_tool_calls": True,
           "stream_options": {"include_usage": False, "include_obfuscation": True}}


def test_fields_without_meaning_here_are_accepted_and_ignored(client, live):
    plain = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=10, temperature=0)
    ignored = post(live, "/v1/chat/completions", {"model": "tiny", "messages": HELLO, "max_tokens": 10,
                                                  "temperature": 0, **IGNORED})
    assert ignored.status_code == 200, ignored.text
    assert ignored.json()["choices"][0]["message"]["content"] == plain.choices[0].message.content
    nulls = post(live, "/v1/chat/completions", {"model": "tiny", "messages": HELLO, "max_tokens": 10,
                                                "temperature": None, "n": None, "stop": None, "seed": None,
                                                "response_format": {"type": "text"}, "audio": None})
    assert nulls.status_code == 200, nulls.text  # null means the default, as in OpenAI's API
    history = [*HELLO, {"role": "assistant", "content": "no", "refusal": "no", "audio": {"id": "a1"}},
               {"role": "user", "content": [{"type": "text", "text": "again"}]}]
    assert post(live, "/v1/chat/completions", {"model": "tiny", "messages": history, "max_tokens": 2}).status_code \
        == 200


def test_parallel_tool_calls_false_keeps_one_call(client):
    reply = client.chat.completions.create(model="tiny", messages=TOOL_MESSAGES, tools=TOOLS, temperature=0,
                                           parallel_tool_calls=False)
    assert len(reply.choices[0].message.tool_calls) == 1


@pytest.mark.parametrize("path,body,param,words", [
    ("/v1/completions", {"prompt": "a", "max_tokens": 0}, "max_tokens", "needs echo"),
    ("/v1/completions", {"prompt": "a", "best_of": 3}, "best_of", "only best_of equal to n"),
    ("/v1/completions", {"prompt": "a", "suffix": "b"}, "suffix", "insertion"),
    ("/v1/completions", {"prompt": [[3, 100000]]}, "prompt", "prompt[0]: token id 100000 is outside"),
    ("/v1/completions", {"prompt": [[]]}, "prompt", "at least one token id"),
    ("/v1/completions", {"prompt": [1.5]}, "prompt", "expected a string, a list of strings"),
    ("/v1/completions", {"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4 stop sequences, got 5"),
    ("/v1/completions", {"prompt": "a", "seed": 2**80}, "seed", "less than or equal to 9223372036854775807"),
    ("/v1/completions", {"prompt": "a", "presence_penalty": float("-inf")}, "presence_penalty", "finite"),
    ("/v1/chat/completions", {"messages": HELLO, "moderation": {"model": "omni"}}, "moderation", "moderation"),
    ("/v1/chat/completions", {"messages": HELLO, "function_call": "auto"}, "function_call", "deprecated"),
])
def test_fields_that_cannot_be_honoured_are_refused_by_name(live, path, body, param, words):
    response = httpx2.post(live + path, content=json.dumps({"model": "tiny", **body}),
                           headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and words in error["message"] and error["type"] == "invalid_request_error"


def test_unknown_fields_are_ignored_with_a_warning_or_refused_when_strict(client, tokenizer, model, caplog):
    with caplog.at_level(logging.WARNING, logger="lmstack.serve"):
        reply = client.completions.create(model="tiny", prompt="hello", max_tokens=2,
                                          extra_body={"guided_choice": ["a"], "beam_width": 2})
    assert reply.choices[0].text is not None
    assert [r.getMessage() for r in caplog.records if "outside OpenAI's schema" in r.getMessage()] == [
        "ignoring request field(s) outside OpenAI's schema: beam_width, guided_choice (serve --strict refuses "
        "them)"]
    with live_app(model, tokenizer, strict=True) as url:
        strict = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        with pytest.raises(openai.BadRequestError) as refused:
            strict.chat.completions.create(model="tiny", messages=HELLO, max_tokens=2, extra_body={"beam_width": 2})
        assert refused.value.body["param"] == "beam_width" and "beam_width" in refused.value.body["message"]
        ours = strict.completions.create(model="tiny", prompt="hello", max_tokens=2, temperature=0.5,
                                         extra_body={"top_k": 5, "repetition_penalty": 1.1})  # our extensions
        assert ours.choices[0].finish_reason in ("stop", "length")
        error = post(url, "/v1/embeddings", {"model": "tiny", "input": "a", "truncate": True}).json()["error"]
        assert error["param"] == "truncate"


def test_max_completion_tokens_caps_the_reply_and_wins_over_max_tokens(client):
    reply = client.chat.completions.create(model="tiny", messages=HELLO, max_completion_tokens=3, max_tokens=9,
                                           temperature=0, logit_bias={"50": 100})
    assert reply.usage.completion_tokens == 3 and reply.choices[0].finish_reason == "length"
