"""The evaluation models: ``LocalLM``'s likelihoods equal lm-eval's recipe computed with transformers on the same
weights, batch 1 equals batch 8, its samples are the seeded single runs; ``ServerLM`` against a live
``lmstack serve`` app gives the same likelihoods and greedy texts, retries on 429 and fails in one line."""

from __future__ import annotations

import copy
import http.server
import json
import threading

import pytest
import torch

from lmstack.errors import LmstackError
from lmstack.eval.lm import GenRequest, LocalLM, ServerLM, encode_pair, open_lm, rolling_windows
from lmstack.generate.api import generate
from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model
from lmstack.text.chat import ChatFormat
from lmstack.text.tokenizer import train_bpe

from ..serve.conftest import live_app

TEXT = ["The river town of Kell trades salt and amber. 凯尔河镇以盐和琥珀贸易为生。", "hello world, 你好，世界！",
        "Question: what is 2 + 3? Answer: 5. Question: what is 4 + 4? Answer: 8."] * 20
CONTEXT = 40
LONG = " ".join(TEXT[:3]) * 3  # well past the context: truncation and several rolling windows
REQUESTS = [("The river town of", " Kell"), ("The river town of ", "Kell trades"), ("", "hello world"),
            ("Question: what is 2 + 3? Answer:", " 5."), ("凯尔河镇以盐和", "琥珀贸易"), ("hello", ", 你好"),
            (LONG, " amber."), (" ", "salt"), ("Answer: ", "8")]


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(TEXT, vocab_size=300)


def tiny(name: str, vocab_size: int, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(preset(name, vocab_size=vocab_size, block_size=CONTEXT)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(3)
    return model


@pytest.fixture(scope="module", params=["gpt2-tiny", "llama-tiny"])
def folder(request, tokenizer, tmp_path_factory):
    return save_model(tiny(request.param, tokenizer.vocab_size), tmp_path_factory.mktemp(request.param) / "m",
                      tokenizer=tokenizer)


@pytest.fixture(scope="module")
def hf(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def reference_loglikelihood(hf, context: str, continuation: str) -> tuple[float, bool]:
    """lm-eval's HFLM recipe, written out over transformers (its tokenizer, its model)."""
    model, tok = hf
    n = len(context) - len(context.rstrip())
    if n:
        context, continuation = context[:-n], context[-n:] + continuation
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    if context == "":
        ctx, cont = [tok.bos_token_id], enc(continuation)
    else:
        ctx = enc(context)
        cont = enc(context + continuation)[len(ctx):]
    inp = (ctx + cont)[-(CONTEXT + 1):][:-1]
    with torch.no_grad():
        logp = model(torch.tensor([inp])).logits[0, -len(cont):].float().log_softmax(-1)
    target = torch.tensor(cont)
    return logp.gather(1, target[:, None]).sum().item(), bool((logp.argmax(-1) == target).all())


def test_loglikelihood_matches_lm_eval_recipe_on_transformers(folder, hf):
    lm = LocalLM(folder, batch_size=8, device="cpu")
    ours = lm.loglikelihood(REQUESTS)
    for (context, continuation), (lp, greedy) in zip(REQUESTS, ours):
        ref_lp, ref_greedy = reference_loglikelihood(hf, context, continuation)
        assert lp == pytest.approx(ref_lp, abs=1e-5) and greedy == ref_greedy
    one = LocalLM(folder, batch_size=1, device="cpu").loglikelihood(REQUESTS)
    assert [g for _, g in one] == [g for _, g in ours]
    assert [lp for lp, _ in one] == pytest.approx([lp for lp, _ in ours], abs=1e-5)


def test_is_greedy_is_true_exactly_for_the_greedy_tokens(folder, tokenizer):
    lm = LocalLM(folder, device="cpu")
    context = tokenizer.encode("The river town of")
    steps = torch.stack(list(decode(lm.model, [context], GenerationConfig(max_new_tokens=6))), 1)[0].tolist()
    assert lm.score_tokens([(context, steps)])[0][1]
    wrong = steps[:-1] + [(steps[-1] + 1) % tokenizer.vocab_size]
    assert not lm.score_tokens([(context, wrong)])[0][1]


def test_rolling_windows_are_lm_eval_s():
    tokens = list(range(10, 33))  # 23 tokens, windows of 8
    windows = rolling_windows(tokens, 0, 8)
    assert [pred for _, pred in windows] == [tokens[0:8], tokens[8:16], tokens[16:23]]
    assert windows[0] == ([0], tokens[:8])  # the prefix token, then the first window predicted in full
    assert windows[1] == ([tokens[7]], tokens[8:16])  # disjoint: one token of context before a full window
    assert windows[2] == (tokens[14:16], tokens[16:23])  # the last reads as far back as the context allows
    for ctx, pred in windows[1:]:
        assert len((ctx + pred)[:-1]) == 8
    assert rolling_windows([], 0, 8) == []


def test_rolling_loglikelihood(folder, hf, tokenizer):
    lm = LocalLM(folder, device="cpu")
    model, _ = hf
    short = "hello world, 你好"
    (total, count), = lm.loglikelihood_rolling([short])
    assert count == len(tokenizer.encode(short))
    assert total == pytest.approx(lm.loglikelihood([("", short)])[0][0], abs=1e-5)  # one window = empty context
    (total, count), = lm.loglikelihood_rolling([LONG])
    tokens = tokenizer.encode(LONG)
    assert count == len(tokens) > 2 * CONTEXT
    expected = 0.0
    for ctx, pred in rolling_windows(tokens, tokenizer.bos_id, CONTEXT):
        inp = (ctx + pred)[:-1]
        with torch.no_grad():
            logp = model(torch.tensor([inp])).logits[0, -len(pred):].log_softmax(-1)
        expected += logp.gather(1, torch.tensor(pred)[:, None]).sum().item()
    assert total == pytest.approx(expected, abs=1e-4)
    assert lm.loglikelihood_rolling([""]) == [(0.0, 0)]


def test_generate_until_stops_and_shares_a_prefill_for_n_samples(folder, tokenizer):
    lm = LocalLM(folder, device="cpu")
    plain = generate(lm.model, tokenizer, "The river", max_new_tokens=12)
    stop = plain[3:5] if len(plain) > 5 else "\n"
    out = lm.generate_until([GenRequest("The river", until=[stop], max_gen_toks=12),
                             GenRequest("The river", until=[], max_gen_toks=12, n=3),
                             GenRequest("hello", until=[], max_gen_toks=8, do_sample=True, seed=4, n=4)])
    assert out[0] == [plain.split(stop)[0]] and out[1] == [plain] * 3
    assert out[2] == [generate(lm.model, tokenizer, "hello", max_new_tokens=8, do_sample=True, seed=4 + j)
                      for j in range(4)]
    one = LocalLM(folder, batch_size=1, device="cpu").generate_until(
        [GenRequest(p, until=[], max_gen_toks=10) for p in ("The river", "hello world", "凯尔")])
    eight = lm.generate_until([GenRequest(p, until=[], max_gen_toks=10) for p in ("The river", "hello world", "凯尔")])
    assert one == eight


def test_chat_messages_use_the_chat_template_and_stop_at_the_turn_end(folder, tokenizer):
    lm = LocalLM(folder, device="cpu")
    messages = [{"role": "user", "content": "what is 2 + 3?"}]
    chat = ChatFormat(tokenizer)
    expected = generate(lm.model, tokenizer, [chat.encode(messages)], stop_ids=chat.end_ids, max_new_tokens=10)[0]
    assert lm.generate_until([GenRequest(messages, until=[], max_gen_toks=10)]) == [[expected]]


def test_chat_likelihood_scores_the_choice_as_the_reply_with_transformers_template(folder, hf, tokenizer):
    """lm-eval's --apply_chat_template for likelihoods: the context is transformers' rendering of the messages with
    the reply opened, the continuation is scored right after it."""
    model, tok = hf
    messages = [{"role": "user", "content": "Question: what is 2 + 3?\nAnswer:"}]
    lm = LocalLM(folder, device="cpu")
    ours = lm.loglikelihood([(messages, " 5."), (messages, " 8.")])
    ctx = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ctx = list(ctx["input_ids"]) if not isinstance(ctx, list) else ctx
    for (lp, _), cont in zip(ours, (" 5.", " 8.")):
        ids = tok.encode(cont, add_special_tokens=False)
        with torch.no_grad():
            logp = model(torch.tensor([ctx + ids])).logits[0, len(ctx) - 1:-1].float().log_softmax(-1)
        assert lp == pytest.approx(logp.gather(1, torch.tensor(ids)[:, None]).sum().item(), abs=1e-5)
    assert ours[0][0] != pytest.approx(lm.loglikelihood([("Question: what is 2 + 3?\nAnswer:", " 5.")])[0][0])


# ------------------------------------------------------------------------------------------ the server client

@pytest.fixture(scope="module")
def local_and_server(tokenizer):
    model = tiny("llama-tiny", tokenizer.vocab_size, seed=3)
    with live_app(copy.deepcopy(model), tokenizer, api_key="secret") as url:
        yield LocalLM.from_model(model, tokenizer), url


def test_server_likelihoods_and_greedy_texts_equal_local(local_and_server, tokenizer):
    local, url = local_and_server
    server = open_lm(base_url=url + "/v1", api_key="secret", batch_size=3, prefix_token=tokenizer.bos_token)
    assert server.model == "tiny"
    fits = [r for r in REQUESTS if r[0] != LONG]
    for (lp, greedy), (ref_lp, ref_greedy) in zip(server.loglikelihood(fits), local.loglikelihood(fits)):
        assert lp == pytest.approx(ref_lp, abs=1e-4) and greedy == ref_greedy
    texts = ["hello world, 你好", "The river town of Kell trades salt"]
    for (lp, n), (ref_lp, ref_n) in zip(server.loglikelihood_rolling(texts), local.loglikelihood_rolling(texts)):
        assert lp == pytest.approx(ref_lp, abs=1e-4) and n == ref_n
    requests = [GenRequest("The river", until=["zz", "a", "b", "c", "e"], max_gen_toks=12),
                GenRequest("hello", until=[], max_gen_toks=10, n=2),
                GenRequest([{"role": "user", "content": "2 + 3?"}], until=[], max_gen_toks=8)]
    assert server.generate_until(requests) == local.generate_until(requests)
    chat = [([{"role": "user", "content": "2 + 3?"}], " 5"), ([{"role": "user", "content": "你好"}], "世界")]
    for (lp, greedy), (ref_lp, ref_greedy) in zip(server.loglikelihood(chat), local.loglikelihood(chat)):
        assert lp == pytest.approx(ref_lp, abs=1e-4) and greedy == ref_greedy


def test_server_errors_are_one_line(local_and_server):
    local, url = local_and_server
    with pytest.raises(LmstackError, match="HTTP 401"):
        ServerLM(url, model="tiny").loglikelihood([("a", "b")])
    with pytest.raises(LmstackError, match="cannot reach the server"):
        ServerLM("http://127.0.0.1:9", model="tiny", max_retries=0).loglikelihood([("a", "b")])
    # an empty context starts from the prefix token the server's /tokenizer_info names (bos), as LocalLM's does
    (lp, greedy), = ServerLM(url, api_key="secret").loglikelihood([("", "b")])
    (ref_lp, ref_greedy), = local.loglikelihood([("", "b")])
    assert lp == pytest.approx(ref_lp, abs=1e-4) and greedy == ref_greedy


class Fake(http.server.BaseHTTPRequestHandler):
    """429 (Retry-After: 0) for the first two requests, then choices without logprobs; records the headers."""
    calls: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Fake.calls.append({"auth": self.headers.get("Authorization"), "body": body})
        if len(Fake.calls) <= 2:
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "queue full"}}')
            return
        answer = {"choices": [{"index": i, "text": p, "logprobs": None} for i, p in enumerate(body["prompt"])]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_retries_on_429_then_names_missing_logprobs():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        lm = ServerLM(f"http://127.0.0.1:{httpd.server_address[1]}", model="m", api_key="k")
        with pytest.raises(LmstackError, match="no logprobs"):
            lm.loglikelihood([("a b", " c")])
        assert len(Fake.calls) == 3 and {c["auth"] for c in Fake.calls} == {"Bearer k"}
        body = Fake.calls[-1]["body"]
        assert body["echo"] is True and body["max_tokens"] == 0 and body["logprobs"] == 1
        assert body["prompt"] == ["a b", "a b c"]  # the context alone, then context + continuation
    finally:
        httpd.shutdown()


def test_encode_pair_moves_trailing_whitespace(tokenizer):
    ctx, cont = encode_pair(tokenizer, "The river ", "town", tokenizer.bos_id)
    assert ctx == tokenizer.encode("The river") and ctx + cont == tokenizer.encode("The river town")
    assert encode_pair(tokenizer, "", "town", 7) == ([7], tokenizer.encode("town"))
