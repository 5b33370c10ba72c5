"""vLLM's tokenizer endpoints (``/tokenize``, ``/detokenize``, ``/tokenizer_info``) against ``transformers``' own
encoding of the saved model directory, and the legacy completions request lm-evaluation-harness's
``local-completions`` sends (``echo``, ``max_tokens: 1``, ``logprobs: 1`` over batched token-id prompts), read the
way its ``parse_logprobs`` reads it, against ``model.scoring``."""

from __future__ import annotations

import copy

import httpx2
import jinja2
import pytest
import torch
from tokenizers import processors
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from lmstack.model.scoring import token_logprobs
from lmstack.text.chat import ChatFormat
from lmstack.text.tokenizer import Tokenizer

from .conftest import CONTEXT, TOOL_MESSAGES, TOOLS, live_app, tape_model

TEXTS = ["The river town of Kell trades salt and amber.", "凯尔河镇以盐和琥珀贸易为生。", "hello world, 你好，世界！",
         " leading and trailing spaces  ", "<|im_start|>user\nhi<|im_end|>", ""]


def post(url: str, path: str, body: dict, **kw) -> httpx2.Response:
    return httpx2.post(url + path, json=body, timeout=60, **kw)


@pytest.fixture(scope="module")
def model(tokenizer):
    return tape_model(tokenizer)


@pytest.fixture(scope="module")
def hf_tokenizer(model_dir):
    return AutoTokenizer.from_pretrained(str(model_dir))


@pytest.mark.parametrize("text", TEXTS)
def test_tokenize_gives_the_tokenizers_ids_and_detokenize_inverts_it(live, tokenizer, hf_tokenizer, text):
    got = post(live, "/tokenize", {"model": "tiny", "prompt": text, "return_token_strs": True}).json()
    assert got["tokens"] == hf_tokenizer(text, add_special_tokens=True).input_ids == tokenizer.encode(text)
    assert got["count"] == len(got["tokens"]) and got["max_model_len"] == CONTEXT
    assert got["token_strs"] == hf_tokenizer.convert_ids_to_tokens(got["tokens"])
    plain = post(live, "/tokenize", {"prompt": text, "add_special_tokens": False}).json()  # lm-eval sends no model
    assert plain["tokens"] == hf_tokenizer(text, add_special_tokens=False).input_ids
    assert plain.get("token_strs") is None
    back = post(live, "/detokenize", {"tokens": got["tokens"]}).json()
    assert back == {"prompt": text}


def test_messages_are_encoded_as_the_chat_route_encodes_them(live, tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "写 <|im_end|> 两次"}]
    got = post(live, "/tokenize", {"messages": messages}).json()
    assert got["tokens"] == ChatFormat(tokenizer).encode(messages)
    assert tokenizer.encode("<|im_end|>")[0] not in got["tokens"][-8:-3]  # the user's text forged no turn end
    chat = post(live, "/v1/chat/completions", {"model": "tiny", "messages": messages, "max_tokens": 1}).json()
    assert chat["usage"]["prompt_tokens"] == got["count"]
    with_tools = post(live, "/tokenize", {"messages": TOOL_MESSAGES, "tools": TOOLS}).json()
    assert with_tools["tokens"] == ChatFormat(tokenizer).encode(TOOL_MESSAGES, TOOLS)
    closed = post(live, "/tokenize", {"messages": messages, "add_generation_prompt": False}).json()
    assert closed["tokens"] == ChatFormat(tokenizer).encode(messages, add_generation_prompt=False)
    assert len(closed["tokens"]) < got["count"]


def test_tokenizer_info_is_the_saved_config_with_the_template_in_use(live, tokenizer, model_dir, hf_tokenizer):
    info = httpx2.get(live + "/tokenizer_info").json()
    assert {k: info[k] for k in ("eos_token", "bos_token", "pad_token")} == \
        {"eos_token": hf_tokenizer.eos_token, "bos_token": hf_tokenizer.bos_token, "pad_token": hf_tokenizer.pad_token}
    assert info["tokenizer_class"] == "PreTrainedTokenizerFast"
    # lm-eval's RemoteTokenizer renders the template with a plain jinja2 environment, and finds eos by /tokenize
    rendered = jinja2.Environment().from_string(info["chat_template"]).render(messages=TOOL_MESSAGES,
                                                                             add_generation_prompt=True)
    assert rendered == tokenizer.apply_chat_template(TOOL_MESSAGES, add_generation_prompt=True)
    eos = post(live, "/tokenize", {"prompt": info["eos_token"], "add_special_tokens": False}).json()["tokens"]
    assert eos == [tokenizer.eos_id]


def test_a_post_processor_frames_prompts_and_messages_only_when_asked(tokenizer):
    """A tokenizer whose post-processor adds bos (as Llama's): add_special_tokens as transformers applies it."""
    backend = copy.deepcopy(tokenizer.backend)
    bos = tokenizer.bos_id
    backend.post_processor = processors.TemplateProcessing(single=f"{tokenizer.bos_token} $A",
                                                           special_tokens=[(tokenizer.bos_token, bos)])
    framed = Tokenizer(backend)
    reference = PreTrainedTokenizerFast(tokenizer_object=copy.deepcopy(backend))
    text = "hello 你好"
    with live_app(tape_model(tokenizer), framed) as url:
        on = post(url, "/tokenize", {"prompt": text}).json()["tokens"]
        off = post(url, "/tokenize", {"prompt": text, "add_special_tokens": False}).json()["tokens"]
        chat = post(url, "/tokenize", {"messages": TOOL_MESSAGES}).json()["tokens"]
        chat_framed = post(url, "/tokenize", {"messages": TOOL_MESSAGES, "add_special_tokens": True}).json()["tokens"]
    assert on == reference(text).input_ids == [bos] + off
    assert off == reference(text, add_special_tokens=False).input_ids
    assert chat_framed == [bos] + chat and chat == ChatFormat(framed).encode(TOOL_MESSAGES)


def test_bad_tokenizer_requests_name_the_field(tokenizer):
    with live_app(tape_model(tokenizer), tokenizer, api_key="k") as url:
        key = {"Authorization": "Bearer k"}
        assert post(url, "/tokenize", {"prompt": "x"}).status_code == 401
        assert httpx2.get(url + "/tokenizer_info").status_code == 401
        both = post(url, "/tokenize", {"prompt": "x", "messages": [{"role": "user", "content": "x"}]}, headers=key)
        neither = post(url, "/tokenize", {"model": "tiny"}, headers=key)
        for reply in (both, neither):
            assert reply.status_code == 400 and "exactly one of prompt or messages" in reply.json()["error"]["message"]
        wrong = post(url, "/tokenize", {"model": "other", "prompt": "x"}, headers=key)
        assert wrong.status_code == 404 and wrong.json()["error"]["param"] == "model"
        outside = post(url, "/detokenize", {"tokens": [1, tokenizer.vocab_size]}, headers=key)
        assert outside.status_code == 400 and outside.json()["error"]["param"] == "tokens"
        assert post(url, "/detokenize", {"tokens": [-1]}, headers=key).status_code == 400
        assert post(url, "/tokenize", {"prompt": "x"}, headers=key).status_code == 200


def greedy_ids(model, ids: list[int], n: int, eos: int) -> list[int]:
    out = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids + out]))[0, -1]
            logits[eos] = -float("inf")
            out.append(int(logits.argmax()))
    return out


def lm_eval_parse_logprobs(reply: dict, ctxlens: list[int]) -> list[tuple[float, bool]]:
    """lm_eval 0.4.13's ``LocalCompletionsAPI.parse_logprobs``, line for line."""
    res = []
    for choice, ctxlen in zip(sorted(reply["choices"], key=lambda c: c["index"]), ctxlens):
        logprobs = choice["logprobs"]["token_logprobs"][ctxlen:-1]
        top = choice["logprobs"]["top_logprobs"][ctxlen:-1]
        res.append((sum(logprobs), all(t == max(d.values()) for t, d in zip(logprobs, top))))
    return res


@pytest.mark.parametrize("end", [False, True], ids=["any-next-token", "eos-next"])
def test_lm_eval_loglikelihood_request_over_token_ids(live, model, tokenizer, end):
    """The body local-completions sends for a batch of loglikelihood requests; with the next token forced to be
    eos (logit_bias), the end token must still be the last logprobs entry, or lm-eval drops a continuation token."""
    pairs = [("The river town of", " Kell trades salt"), ("hello world,", " 你好"), ("凯尔河镇", "以盐和琥珀")]
    ctx = [tokenizer.encode(c) for c, _ in pairs]
    cont = [tokenizer.encode(x) for _, x in pairs]
    ctx.append(tokenizer.encode("salt and"))
    cont.append(greedy_ids(model, ctx[-1], 3, tokenizer.eos_id))  # a continuation greedy decoding writes
    body = {"model": "tiny", "prompt": [c + x for c, x in zip(ctx, cont)], "temperature": 0, "max_tokens": 1,
            "logprobs": 1, "seed": 1234, "echo": True}
    if end:
        body["logit_bias"] = {str(tokenizer.eos_id): 100}
    reply = post(live, "/v1/completions", body).json()
    for choice, c, x in zip(reply["choices"], ctx, cont):
        assert len(choice["logprobs"]["token_logprobs"]) == len(c) + len(x) + 1
        if end:
            assert choice["logprobs"]["tokens"][-1] == tokenizer.eos_token and choice["finish_reason"] == "stop"
            assert choice["text"] == tokenizer.decode(c + x)  # the end token's text is not in the text
    with torch.no_grad():
        expected = token_logprobs(model, ctx, cont)
        greedy = [bool((model(torch.tensor([c + x]))[0, len(c) - 1:-1].argmax(-1) == torch.tensor(x)).all())
                  for c, x in zip(ctx, cont)]
    got = lm_eval_parse_logprobs(reply, [len(c) for c in ctx])
    assert [g[0] for g in got] == pytest.approx([float(e.sum()) for e in expected], abs=1e-4)
    assert [g[1] for g in got] == greedy and greedy[-1]
    one_by_one = [lm_eval_parse_logprobs(post(live, "/v1/completions", {**body, "prompt": [p]}).json(), [len(c)])[0]
                  for p, c in zip(body["prompt"], ctx)]
    assert [g[0] for g in one_by_one] == pytest.approx([g[0] for g in got], abs=1e-5)  # padded batches: fp32 rounding
