"""The OpenAI REST surface through the official ``openai`` client, against a real server process."""

from __future__ import annotations

import base64
import json
import threading

import httpx2
import openai
import pytest
import torch

from lmstack.generate.api import generate
from lmstack.model.hf import load_model
from lmstack.text.chat import ChatFormat

from .conftest import API_KEY, CONTEXT, TOOL_MESSAGES, TOOLS

HELLO = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hello 你好"}]


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server + "/v1", api_key=API_KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def local(model_dir, tokenizer):
    return load_model(model_dir).eval(), tokenizer


def post(server: str, path: str, body, key: str | None = API_KEY, **kw) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx2.post(server + path, content=content, headers={**headers, "Content-Type": "application/json"},
                       timeout=60, **kw)


def assert_error(response: httpx2.Response, status: int, words: str = "") -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and words in error["message"]
    return error


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    health = httpx2.get(server + "/health").json()
    assert health["status"] == "ok" and health["slots"] == 4


def test_chat_matches_local_greedy_decoding(client, local, tokenizer):
    reply = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=20, temperature=0)
    model, _ = local
    prompt = tokenizer.apply_chat_template(HELLO, add_generation_prompt=True)
    expected = generate(model, tokenizer, prompt, max_new_tokens=20, stop=["<|im_end|>"])
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == expected
    assert reply.usage.prompt_tokens == len(ChatFormat(tokenizer).encode(HELLO))
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert choice.finish_reason == ("length" if reply.usage.completion_tokens == 20 else "stop")


def test_streaming_sends_the_same_text_then_done(client, server):
    plain = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=30, temperature=0)
    chunks = list(client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=30, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == plain.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    raw = post(server, "/v1/chat/completions", {"model": "tiny", "messages": HELLO, "max_tokens": 3, "stream": True})
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.rstrip().endswith("data: [DONE]")


def test_n_choices_are_seeded_and_distinct(client):
    def ask():
        return client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=12, n=3, seed=7,
                                              temperature=1.5)
    a, b = ask(), ask()
    texts = [c.message.content for c in a.choices]
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert texts == [c.message.content for c in b.choices]  # same seed, same texts
    assert len(set(texts)) > 1  # each choice draws from its own seed


def test_stop_string_cuts_the_text(client):
    full = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=30, temperature=0)
    text = full.choices[0].message.content
    stop = text[len(text) // 2:len(text) // 2 + 2]
    cut = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=30, temperature=0, stop=[stop])
    assert cut.choices[0].message.content == text[:text.find(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_logprobs(client):
    reply = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=8, temperature=0, logprobs=True,
                                           top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert 0 < len(content) <= 8
    for entry in content:
        tops = [t.logprob for t in entry.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True) and tops[0] <= 0
        assert entry.logprob == pytest.approx(tops[0])  # greedy: the chosen token is the most likely
    completion = client.completions.create(model="tiny", prompt="hello", max_tokens=5, temperature=0, logprobs=2)
    assert len(completion.choices[0].logprobs.token_logprobs) == 5


def test_completions_with_several_prompts(client, local, tokenizer):
    reply = client.completions.create(model="tiny", prompt=["hello", "凯尔河镇"], max_tokens=6, temperature=0)
    model, _ = local
    assert [c.text for c in reply.choices] == generate(model, tokenizer, ["hello", "凯尔河镇"], max_new_tokens=6)
    assert reply.usage.prompt_tokens == len(tokenizer.encode("hello")) + len(tokenizer.encode("凯尔河镇"))


def test_the_model_calls_a_tool(client, tokenizer):
    reply = client.chat.completions.create(model="tiny", messages=TOOL_MESSAGES, tools=TOOLS, temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.function.name == "calculator"
    assert json.loads(call.function.arguments) == {"expression": "2 + 2"}
    chunks = list(client.chat.completions.create(model="tiny", messages=TOOL_MESSAGES, tools=TOOLS, temperature=0,
                                                 stream=True))
    assert not "".join(c.choices[0].delta.content or "" for c in chunks)  # the call's text is not streamed
    calls = [t for c in chunks for t in c.choices[0].delta.tool_calls or []]
    assert [(t.function.name, json.loads(t.function.arguments)) for t in calls] == [("calculator",
                                                                                      {"expression": "2 + 2"})]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # the call and its result continue the conversation; a named tool_choice writes the call's opening
    history = TOOL_MESSAGES + [choice.message.model_dump(exclude_none=True),
                               {"role": "tool", "tool_call_id": call.id, "content": "4"}]
    follow = client.chat.completions.create(model="tiny", messages=history, tools=TOOLS, max_tokens=4,
                                            tool_choice={"type": "function", "function": {"name": "calculator"}})
    forced = tokenizer.encode('<tool_call>{"name": "calculator", "arguments": ')
    assert follow.usage.prompt_tokens == len(ChatFormat(tokenizer).encode(history, TOOLS)) + len(forced)
    none = client.chat.completions.create(model="tiny", messages=TOOL_MESSAGES, tools=TOOLS, tool_choice="none",
                                          max_tokens=4)
    assert none.choices[0].finish_reason != "tool_calls"


def test_embeddings_are_unit_vectors(client):
    floats = client.embeddings.create(model="tiny", input=["hello", "凯尔河镇", "hello"], encoding_format="float")
    vectors = torch.tensor([d.embedding for d in floats.data])
    assert vectors.shape == (3, 128)
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(vectors[0], vectors[2]) and not torch.allclose(vectors[0], vectors[1])
    packed = client.embeddings.create(model="tiny", input="hello")  # the client asks for base64 by default
    assert packed.data[0].embedding == pytest.approx(vectors[0].tolist(), abs=1e-6)
    raw = client.embeddings.with_raw_response.create(model="tiny", input="hello", encoding_format="base64")
    blob = json.loads(raw.text)["data"][0]["embedding"]
    assert len(base64.b64decode(blob)) == 4 * 128


@pytest.mark.parametrize("body,status,words", [
    ({"model": "tiny", "messages": []}, 400, "messages"),
    ({"model": "tiny", "messages": [{"role": "tool", "content": "4"}]}, 400, "must follow an assistant"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]}, 400,
     "system message may only come first"),
    ({"model": "tiny", "messages": [{"role": "wizard", "content": "a"}]}, 400, "messages.0.role"),
    ({"model": "tiny", "messages": HELLO, "max_tokens": "many"}, 400, "max_tokens"),
    ({"model": "tiny", "messages": HELLO, "temperature": 5}, 400, "temperature"),
    ({"model": "tiny", "messages": HELLO, "stop": list("abcde")}, 400, "stop: at most 4 stop sequences, got 5"),
    ({"model": "tiny", "messages": HELLO, "seed": 2**80}, 400, "seed: Input should be less than or equal to"),
    ({"model": "tiny", "messages": HELLO, "temperature": float("nan")}, 400, "temperature: Input should be a finite"),
    ({"model": "tiny", "messages": HELLO, "top_p": float("inf")}, 400, "top_p"),
    ({"model": "tiny", "messages": HELLO, "frequency_penalty": 2.5}, 400, "frequency_penalty"),
    ({"model": "tiny", "messages": HELLO, "logit_bias": {"5": 101}}, 400, "logit_bias.5"),
    ({"model": "tiny", "messages": HELLO, "logit_bias": {"cat": 1}}, 400, "logit_bias: 'cat' is not a token id"),
    ({"model": "tiny", "messages": HELLO, "logit_bias": {"100000": 1}}, 400, "logit_bias: '100000'"),
    ({"model": "tiny", "messages": HELLO, "audio": {"voice": "alloy", "format": "wav"}}, 400, "audio output"),
    ({"model": "tiny", "messages": HELLO, "modalities": ["text", "audio"]}, 400, "modalities"),
    ({"model": "tiny", "messages": HELLO, "functions": [{"name": "f"}]}, 400, "functions: the deprecated"),
    ({"model": "tiny", "messages": HELLO, "web_search_options": {}}, 400, "web search"),
    ({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     400, "image_url content parts are not supported"),
    ({"model": "tiny", "messages": HELLO, "response_format": {"type": "json_schema"}}, 400, "json_schema"),
    ({"model": "tiny", "messages": HELLO, "max_tokens": 201}, 400, "at most 200"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "hello " * 600}]}, 400, "context"),
    ({"model": "gpt-4", "messages": HELLO}, 404, "does not exist"),
    ({"model": "tiny", "messages": HELLO, "tool_choice": "required"}, 400, "needs tools"),
])
def test_bad_requests_get_openai_errors(server, body, status, words):
    assert_error(post(server, "/v1/chat/completions", body), status, words)


def test_max_tokens_beyond_the_context(server, tokenizer):
    room = CONTEXT - len(ChatFormat(tokenizer).encode([{"role": "user", "content": "hello " * 450}]))
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello " * 450}], "max_tokens": room + 1}
    assert room + 1 <= 200
    assert_error(post(server, "/v1/chat/completions", body), 400, f"leaving {room}")


def test_malformed_json_auth_size_and_routes(server, client):
    assert_error(post(server, "/v1/chat/completions", b'{"model": "tiny", "messages": ['), 400, "not valid JSON")
    assert_error(post(server, "/v1/chat/completions", {"model": "tiny", "messages": HELLO}, key=None), 401, "API key")
    assert_error(post(server, "/v1/chat/completions", {"model": "tiny", "messages": HELLO}, key="wrong"), 401)
    big = {"model": "tiny", "messages": [{"role": "user", "content": "x" * 200_000}]}
    assert_error(post(server, "/v1/chat/completions", big), 413, "larger than")
    assert_error(httpx2.get(server + "/v1/nothing"), 404)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=HELLO)
    assert httpx2.get(server + "/openapi.json").json()["paths"]["/v1/chat/completions"]


def test_a_full_queue_answers_429_and_the_server_recovers(server, client):
    results, barrier = [], threading.Barrier(12)

    def ask():
        barrier.wait()
        results.append(post(server, "/v1/completions", {"model": "tiny", "prompt": "hello", "max_tokens": 200,
                                                        "temperature": 0}))

    threads = [threading.Thread(target=ask) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert set(codes) == {200, 429} and codes.count(200) >= 6  # 4 slots + 2 waiting places
    busy = next(r for r in results if r.status_code == 429)
    assert busy.headers["retry-after"] == "1" and busy.json()["error"]["type"] == "rate_limit_error"
    assert client.completions.create(model="tiny", prompt="hello", max_tokens=2).choices[0].text is not None


def test_a_client_that_disconnects_mid_stream_frees_its_slot(server):
    body = {"model": "tiny", "prompt": "hello", "max_tokens": 200, "temperature": 0, "stream": True}
    steps = httpx2.get(server + "/health").json()["steps"]
    with httpx2.stream("POST", server + "/v1/completions", json=body, timeout=30,
                       headers={"Authorization": f"Bearer {API_KEY}"}) as response:
        next(response.iter_lines())
    deadline = 50
    while deadline and httpx2.get(server + "/health").json()["running"]:
        threading.Event().wait(0.1)
        deadline -= 1
    health = httpx2.get(server + "/health").json()
    assert health["running"] == 0 and health["steps"] - steps < 150, health["steps"] - steps


def test_a_speculative_server_answers_as_plain_greedy(model_dir, local, tokenizer, tmp_path):
    """``serve --draft`` (the model drafting for itself) and ``--prompt-lookup``: the
    official client gets the text plain greedy decoding makes."""
    from .conftest import start_server, stop_server

    model, _ = local
    prompts = ["hello 你好 hello 你好 hello", "凯尔河镇"]
    expected = generate(model, tokenizer, prompts, max_new_tokens=24)
    for flags in (["--prompt-lookup", "3"], ["--draft", str(model_dir), "--num-draft", "3"]):
        proc, url = start_server(model_dir, *flags)
        try:
            spec = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
            reply = spec.completions.create(model="tiny", prompt=prompts, max_tokens=24, temperature=0)
            assert [c.text for c in reply.choices] == expected
        finally:
            stop_server(proc)


def test_a_bad_drafter_is_refused_before_serving(model_dir):
    import subprocess
    import sys

    from .conftest import SERVER

    for flags, words in ((["--prompt-lookup", "2", "--num-draft", "0"], "--num-draft must be at least 1"),
                         (["--prompt-lookup", "2", "--draft", str(model_dir)], "choose one drafter")):
        done = subprocess.run([sys.executable, "-c", SERVER, "serve", "--model", str(model_dir), *flags],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode != 0 and done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
