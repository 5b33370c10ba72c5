"""The models an evaluation runs against: a local model directory (``LocalLM``) or any OpenAI-compatible server
(``ServerLM``), behind lm-evaluation-harness's three request types (Gao et al., EleutherAI lm-eval 0.4):

    lm = open_lm("runs/demo/train/model")                       # or open_lm(base_url="http://127.0.0.1:8000")
    lm.loglikelihood([("Question: 2+2?\\nAnswer:", " 4")])       # [(log p(" 4" | context), is_greedy)]
    lm.loglikelihood_rolling(["a whole document"])             # [(total log-likelihood, tokens scored)]
    lm.generate_until([GenRequest("Q: ...\\nA:", until=["\\n"], n=8, do_sample=True, seed=0)])   # [[8 texts]]

Tokenisation follows lm-eval's ``HFLM``: whitespace at the end of a context moves to the continuation, the
continuation is what encoding ``context + continuation`` adds after the context's own tokens
(``TemplateLM._encode_pair``), an empty context starts from the prefix token (bos, else eos), inputs are
left-truncated to the model's context; rolling log-likelihoods score disjoint windows of the model's context
(``get_rolling_token_windows`` with ``context_len=1``, ``make_disjoint_window``). ``n`` samples of a prompt share
one prefill (self-consistency, Wang et al. 2023): sample j is the one seed ``seed + j`` gives alone.

``ServerLM`` has no tokenizer: it sends texts to ``/v1/completions`` with ``echo``, ``max_tokens: 0`` and
``logprobs: 1`` and finds the continuation's tokens by also echoing the context alone (so a continuation is
tokenised exactly as ``LocalLM`` and lm-eval's ``_encode_pair`` do, whatever the server's token texts look like;
a byte-level token of half a CJK character has no usable ``text_offset``). Generation goes to
``/v1/completions`` (or ``/v1/chat/completions`` for chat messages / ``chat=True``). Only the standard library
(urllib) talks to the server.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from lmstack.adapt.methods import load_adapted
from lmstack.devices import resolve_device
from lmstack.errors import LmstackError
from lmstack.generate.api import pieces
from lmstack.generate.config import GenerationConfig
from lmstack.text.chat import ChatFormat
from lmstack.text.stream import TextStream
from lmstack.text.tokenizer import Tokenizer

MAX_SERVER_STOPS = 4  # OpenAI's limit on ``stop``; the rest are cut client-side


@dataclass
class GenRequest:
    """One generate-until request (lm-eval's ``generate_until`` arguments, plus ``n`` samples)."""
    context: str | list[dict]  # a prompt string, or chat messages (rendered by the model's chat template)
    until: list[str]  # stop strings (cut from the output)
    max_gen_toks: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    n: int = 1  # K samples of the same prompt (self-consistency): ONE prefill shared by all
    seed: int | None = None

    @property
    def sampled(self) -> bool:
        """Whether outputs are drawn (lm-eval: temperature 0 is greedy whatever ``do_sample`` says)."""
        return self.do_sample and self.temperature > 0

    def key(self) -> tuple:
        """What requests must share to be decoded in one batch."""
        return (tuple(self.until), self.max_gen_toks, self.sampled, self.temperature, self.n, self.seed,
                isinstance(self.context, list))


class LM(Protocol):
    name: str

    def loglikelihood(self, requests: list[tuple[str | list[dict], str]]) -> list[tuple[float, bool]]:
        """(log p(continuation | context) summed over the continuation's tokens, whether greedy decoding would
        produce exactly the continuation) — lm-eval's loglikelihood. A context of chat messages is rendered by
        the model's chat template with the reply opened, and the continuation is scored as the reply's start."""
        ...

    def loglikelihood_rolling(self, texts: list[str]) -> list[tuple[float, int]]:
        """(total log-likelihood of the text, number of tokens scored) with windows of the model's context."""
        ...

    def generate_until(self, requests: list[GenRequest]) -> list[list[str]]:
        """For each request, its n outputs."""
        ...


def split_whitespace(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's ``_encode_pair`` first step: whitespace ending the context moves to the continuation."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        return context[:-n_spaces], context[-n_spaces:] + continuation
    return context, continuation


def encode_pair(tokenizer: Tokenizer, context: str, continuation: str, prefix_id: int) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-eval's ``TemplateLM`` makes them for a causal LM: the continuation
    is what ``encode(context + continuation)`` holds after ``len(encode(context))`` tokens; an empty context is
    the prefix token and the continuation is encoded alone (so is a context of whitespace only, which lm-eval
    would leave with no token to predict from)."""
    context, continuation = split_whitespace(context, continuation)
    if context == "":
        return [prefix_id], tokenizer.encode(continuation)
    whole, ctx = tokenizer.encode(context + continuation), tokenizer.encode(context)
    return ctx, whole[len(ctx):]


def rolling_windows(tokens: list[int], prefix_id: int, max_seq_len: int,
                    context_len: int = 1) -> list[tuple[list[int], list[int]]]:
    """lm-eval's ``get_rolling_token_windows`` made disjoint (``make_disjoint_window``): (context, predicted)
    pairs that predict every token of ``tokens`` exactly once, each read in at most ``max_seq_len`` tokens,
    the first from the prefix token."""
    if not 1 <= context_len <= max_seq_len:
        raise ValueError(f"need 1 <= context_len <= max_seq_len, got {context_len}, {max_seq_len}")
    if not tokens:
        return []
    pred_len = max_seq_len - context_len + 1
    first = min(max_seq_len, len(tokens))
    windows = [([prefix_id] + tokens[:first - 1], tokens[:first])]
    predicted = first
    while predicted < len(tokens):
        n = min(len(tokens) - predicted, pred_len)
        end = predicted + n
        windows.append((tokens[max(end - max_seq_len - 1, 0):end - 1], tokens[end - n:end]))
        predicted += n
    return [(ctx[:len(ctx) - (len(pred) - 1)], pred) for ctx, pred in windows]


class LocalLM:
    """A model directory (+ adapter) on this machine, scored and decoded in batches of ``batch_size``."""

    def __init__(self, model: str | Path, adapter: str | None = None, batch_size: int = 8, device: str = "auto",
                 dtype: str = "float32"):
        if dtype not in ("float32", "bfloat16", "float16"):
            raise LmstackError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
        net, tokenizer = load_adapted(model, adapter, device=str(resolve_device(device)), dtype=getattr(torch, dtype))
        name = str(model) if adapter is None else f"{model}+{adapter}"
        self._setup(net, tokenizer, name, batch_size)

    @classmethod
    def from_model(cls, model: nn.Module, tokenizer: Tokenizer, name: str = "model", batch_size: int = 8) -> LocalLM:
        """An ``LocalLM`` over a model already in memory (tests, a training loop's evaluation)."""
        lm = cls.__new__(cls)
        lm._setup(model.eval(), tokenizer, name, batch_size)
        return lm

    def _setup(self, model: nn.Module, tokenizer: Tokenizer, name: str, batch_size: int) -> None:
        if batch_size < 1:
            raise LmstackError(f"batch_size must be at least 1, got {batch_size}")
        self.model, self.tokenizer, self.name, self.batch_size = model, tokenizer, name, batch_size
        self.max_length = model.config.block_size  # the context (a virtual-token adapter's is shorter)
        prefix = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
        if prefix is None:
            raise LmstackError(f"{name}: the tokenizer has neither a bos nor an eos token to start a text from")
        self.prefix_id = prefix
        self.device = next(model.parameters()).device
        self._chat: ChatFormat | None = None

    @property
    def chat(self) -> ChatFormat:
        if self._chat is None:
            self._chat = ChatFormat(self.tokenizer)
        return self._chat

    def loglikelihood(self, requests: list[tuple[str | list[dict], str]]) -> list[tuple[float, bool]]:
        pairs = [(self.chat.encode(c), self.tokenizer.encode(x)) if isinstance(c, list)
                 else encode_pair(self.tokenizer, c, x, self.prefix_id) for c, x in requests]
        for (context, continuation), (_, ids) in zip(requests, pairs):
            if not ids:
                raise LmstackError(f"the continuation {continuation!r} of context {str(context)[-40:]!r} has no "
                                   "tokens")
        return self.score_tokens(pairs)

    def loglikelihood_rolling(self, texts: list[str]) -> list[tuple[float, int]]:
        windows, owner = [], []
        for i, text in enumerate(texts):
            for window in rolling_windows(self.tokenizer.encode(text), self.prefix_id, self.max_length):
                windows.append(window)
                owner.append(i)
        totals = [0.0] * len(texts)
        for i, (logprob, _) in zip(owner, self.score_tokens(windows)):
            totals[i] += logprob
        return [(total, len(self.tokenizer.encode(text))) for total, text in zip(totals, texts)]

    @torch.inference_mode()
    def score_tokens(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """(sum log p(continuation | context), greedy) of token-id pairs, as lm-eval's
        ``_loglikelihood_tokens``: each row is ``(context + continuation)[-(max_length + 1):][:-1]``, longest
        rows first, right-padded in batches (a causal model never attends forward)."""
        L = self.max_length
        for _, cont in pairs:
            if len(cont) > L:
                raise LmstackError(f"a continuation of {len(cont)} tokens does not fit the {L}-token context")
        out: list[tuple[float, bool] | None] = [None] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        own = getattr(self.model, "continuation_logits", None)  # an encoder-decoder: the context is its input
        for lo in range(0, len(order), self.batch_size):
            chunk = order[lo:lo + self.batch_size]
            if callable(own):
                rows = own([pairs[i][0][-L:] for i in chunk], [pairs[i][1] for i in chunk])
            else:
                inputs = [(pairs[i][0] + pairs[i][1])[-(L + 1):][:-1] for i in chunk]
                idx = torch.zeros(len(chunk), max(map(len, inputs)), dtype=torch.long)
                for row, ids in enumerate(inputs):
                    idx[row, :len(ids)] = torch.tensor(ids)
                logits = self.model(idx.to(self.device))
                rows = [logits[row, len(ids) - len(pairs[i][1]):len(ids)]
                        for row, (i, ids) in enumerate(zip(chunk, inputs))]
            for i, z in zip(chunk, rows):  # z [len(cont), V]: the logits that predict each continuation token
                cont = torch.tensor(pairs[i][1], device=self.device)
                logp = z.float().log_softmax(dim=-1)
                out[i] = (logp.gather(1, cont[:, None]).sum().item(), bool((logp.argmax(dim=-1) == cont).all()))
        return out  # type: ignore[return-value]

    def generate_until(self, requests: list[GenRequest]) -> list[list[str]]:
        out: list[list[str] | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            _check_request(r)
            groups.setdefault(r.key(), []).append(i)
        for members in groups.values():
            per_batch = max(1, self.batch_size // requests[members[0]].n) if requests[members[0]].sampled else \
                self.batch_size
            for lo in range(0, len(members), per_batch):
                chunk = members[lo:lo + per_batch]
                for i, texts in zip(chunk, self._generate([requests[i] for i in chunk])):
                    out[i] = texts
        return out  # type: ignore[return-value]

    def _generate(self, requests: list[GenRequest]) -> list[list[str]]:
        """One batch of requests sharing their generation settings."""
        first = requests[0]
        stop_ids: frozenset[int] = frozenset()
        if isinstance(first.context, list):
            prompts = [self.chat.encode(r.context) for r in requests]
            stop_ids = self.chat.end_ids
        else:
            prompts = [self.tokenizer.encode(r.context) or [self.prefix_id] for r in requests]
        keep = max(1, self.max_length - first.max_gen_toks)  # lm-eval: room for max_gen_toks new tokens
        prompts = [p[-keep:] for p in prompts]
        sampled = first.sampled
        config = GenerationConfig(max_new_tokens=first.max_gen_toks, do_sample=sampled,
                                  temperature=first.temperature if sampled else 1.0, stop=[u for u in first.until if u],
                                  seed=first.seed)
        k = first.n if sampled else 1  # greedy: n copies of one decoding
        streams = [TextStream(self.tokenizer, config.stop) for _ in range(len(prompts) * k)]
        for _ in pieces(self.model, self.tokenizer, prompts, config, streams, stop_ids, None, k):
            pass
        texts = [s.text for s in streams]
        return [texts[b * k:(b + 1) * k] if sampled else texts[b:b + 1] * first.n for b in range(len(prompts))]


def _check_request(r: GenRequest) -> None:
    if r.n < 1 or r.max_gen_toks < 1:
        raise LmstackError(f"a generation request needs n >= 1 and max_gen_toks >= 1, got n={r.n}, "
                           f"max_gen_toks={r.max_gen_toks}")
    if not math.isfinite(r.temperature) or r.temperature < 0:
        raise LmstackError(f"temperature must be a finite number >= 0, got {r.temperature}")


def cut_at_stops(text: str, until: list[str]) -> str:
    """The text before the earliest occurrence of any stop string (lm-eval's ``s.split(term)[0]`` for each)."""
    for term in until:
        if term:
            text = text.split(term)[0]
    return text


class ServerLM:
    """Any OpenAI-compatible server (``lmstack serve``, vLLM, ...): likelihoods from ``/v1/completions`` with
    ``echo`` and ``logprobs``, texts from ``/v1/completions`` or ``/v1/chat/completions``."""

    def __init__(self, base_url: str, model: str | None = None, api_key: str | None = None, batch_size: int = 8,
                 chat: bool = False, timeout: float = 600.0, max_retries: int = 6, prefix_token: str | None = None):
        """``prefix_token``: the text of the token an empty context starts from (default: the server's
        ``/tokenizer_info`` bos token, else its eos token, as lm-eval's prefix token)."""
        if batch_size < 1:
            raise LmstackError(f"batch_size must be at least 1, got {batch_size}")
        url = base_url.rstrip("/")
        for tail in ("/chat/completions", "/completions", "/v1"):
            url = url[:-len(tail)] if url.endswith(tail) else url
        self.base_url, self.api_key, self.batch_size, self.chat = url, api_key, batch_size, chat
        self.timeout, self.max_retries = timeout, max_retries
        self.model = model or self._first_model()
        self.name = f"{self.model}@{self.base_url}"
        self._prefix = prefix_token
        self._templates: dict[str, str] = {}  # chat messages (JSON) -> the server's rendering

    # ------------------------------------------------------------------------------------------- HTTP
    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One JSON request, retried on 429 / 503 after ``Retry-After`` seconds (else 1, 2, 4, ... s)."""
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                detail = _error_message(e)
                if e.code in (429, 503) and attempt < self.max_retries:
                    time.sleep(_retry_after(e.headers.get("Retry-After"), attempt))
                    continue
                raise LmstackError(f"{method} {url}: HTTP {e.code}: {detail}") from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise LmstackError(f"cannot reach the server at {url}: {reason} (is it running? check --base-url)") \
                    from None
            except json.JSONDecodeError:
                raise LmstackError(f"{method} {url}: the answer is not JSON") from None
        raise AssertionError("unreachable")

    def _first_model(self) -> str:
        models = self._request("GET", "/v1/models").get("data") or []
        if not models or "id" not in models[0]:
            raise LmstackError(f"{self.base_url}/v1/models lists no model; pass model=")
        return models[0]["id"]

    def _rendered(self, messages: list[dict]) -> str:
        """The chat template's text of ``messages`` with the reply opened, as the server renders it
        (``/tokenize`` with messages, then ``/detokenize``); its special tokens are read back as such."""
        key = json.dumps(messages, ensure_ascii=False, sort_keys=True)
        if key not in self._templates:
            ids = self._request("POST", "/tokenize", {"model": self.model, "messages": messages,
                                                      "add_generation_prompt": True}).get("tokens")
            if not isinstance(ids, list):
                raise LmstackError(f"{self.base_url}/tokenize did not render the chat messages (no 'tokens'); "
                                   "chat-template likelihoods need vLLM's /tokenize and /detokenize")
            self._templates[key] = self._request("POST", "/detokenize", {"model": self.model,
                                                                          "tokens": ids}).get("prompt", "")
        return self._templates[key]

    def _prefix_text(self) -> str:
        """The text of the token an empty context starts from (bos, else eos), read from ``/tokenizer_info``."""
        if self._prefix is None:
            try:
                info = self._request("GET", "/tokenizer_info")
            except LmstackError as e:
                raise LmstackError(f"an empty context needs the server's bos/eos token, and {e}") from None
            for key in ("bos_token", "eos_token"):
                token = info.get(key)
                token = token.get("content") if isinstance(token, dict) else token
                if token:
                    self._prefix = token
                    break
            else:
                raise LmstackError(f"{self.base_url}/tokenizer_info names no bos_token or eos_token")
        return self._prefix

    # ------------------------------------------------------------------------------------------- scoring
    def _echo(self, prompts: list[str]) -> list[tuple[list[float | None], list[dict | None]]]:
        """(token log-probabilities, top-1 dicts) of each prompt's own tokens, ``batch_size`` prompts a request."""
        out = []
        for lo in range(0, len(prompts), self.batch_size):
            chunk = prompts[lo:lo + self.batch_size]
            answer = self._request("POST", "/v1/completions", {
                "model": self.model, "prompt": chunk, "echo": True, "max_tokens": 0, "logprobs": 1,
                "temperature": 0})
            choices = sorted(answer.get("choices") or [], key=lambda c: c.get("index", 0))
            if len(choices) != len(chunk):
                raise LmstackError(f"{self.base_url}/v1/completions answered {len(choices)} choices for "
                                   f"{len(chunk)} prompts")
            for choice in choices:
                logprobs = choice.get("logprobs") or {}
                tokens, top = logprobs.get("token_logprobs"), logprobs.get("top_logprobs")
                if not tokens:
                    raise LmstackError(f"{self.base_url}/v1/completions returned no logprobs with echo and "
                                       "max_tokens 0; the server cannot score prompts (lm-eval's local-completions "
                                       "needs the same)")
                out.append((tokens, top or [None] * len(tokens)))
        return out

    def _score(self, pairs: list[tuple[str, str]]) -> list[tuple[float, bool, int]]:
        """(log-likelihood, greedy, tokens) of each (context, whole text): the whole's tokens after those the
        context alone has."""
        contexts = sorted({c for c, _ in pairs})
        echoed = self._echo(contexts + [w for _, w in pairs])
        n_ctx = {c: len(e[0]) for c, e in zip(contexts, echoed)}
        out = []
        for (context, whole), (lps, tops) in zip(pairs, echoed[len(contexts):]):
            start = n_ctx[context]
            if start >= len(lps):
                raise LmstackError(f"the continuation after {context[-40:]!r} adds no tokens on the server")
            picked = lps[start:]
            if any(lp is None for lp in picked):
                raise LmstackError(f"{self.base_url} returned a token without a logprob in {whole[-40:]!r}")
            greedy = all(top is not None and top and lp >= max(top.values())
                         for lp, top in zip(picked, tops[start:]))
            out.append((float(sum(picked)), greedy, len(picked)))
        return out

    def loglikelihood(self, requests: list[tuple[str | list[dict], str]]) -> list[tuple[float, bool]]:
        pairs = []
        for context, continuation in requests:
            if isinstance(context, list):  # the server renders the template (vLLM's /tokenize with messages)
                context = self._rendered(context)
            else:
                context, continuation = split_whitespace(context, continuation)
            context = context or self._prefix_text()
            pairs.append((context, context + continuation))
        return [(lp, greedy) for lp, greedy, _ in self._score(pairs)]

    def loglikelihood_rolling(self, texts: list[str]) -> list[tuple[float, int]]:
        """One window per text (the server holds the tokenizer): a text longer than the server's context is
        refused by it."""
        out: list[tuple[float, int]] = [(0.0, 0)] * len(texts)
        todo = [i for i, t in enumerate(texts) if t]
        if todo:
            prefix = self._prefix_text()
            for i, (lp, _, n) in zip(todo, self._score([(prefix, prefix + texts[i]) for i in todo])):
                out[i] = (lp, n)
        return out

    # ------------------------------------------------------------------------------------------- generation
    def generate_until(self, requests: list[GenRequest]) -> list[list[str]]:
        for r in requests:
            _check_request(r)
        with ThreadPoolExecutor(max_workers=self.batch_size) as pool:  # the server batches concurrent requests
            return list(pool.map(self._generate, requests))

    def _generate(self, r: GenRequest) -> list[str]:
        body = {"model": self.model, "max_tokens": r.max_gen_toks, "n": r.n,
                "temperature": r.temperature if r.sampled else 0.0}
        stops = [u for u in r.until if u]
        if stops:
            body["stop"] = stops[:MAX_SERVER_STOPS]
        if r.seed is not None:
            body["seed"] = r.seed
        if isinstance(r.context, list) or self.chat:
            messages = r.context if isinstance(r.context, list) else [{"role": "user", "content": r.context}]
            answer = self._request("POST", "/v1/chat/completions", {**body, "messages": messages})
            texts = [(c.get("message") or {}).get("content") or "" for c in _choices(answer)]
        else:
            answer = self._request("POST", "/v1/completions", {**body, "prompt": r.context})
            texts = [c.get("text") or "" for c in _choices(answer)]
        if len(texts) != r.n:
            raise LmstackError(f"{self.base_url} answered {len(texts)} choices for n={r.n}")
        return [cut_at_stops(t, r.until) for t in texts]


def _choices(answer: dict) -> list[dict]:
    return sorted(answer.get("choices") or [], key=lambda c: c.get("index", 0))


def _error_message(e: urllib.error.HTTPError) -> str:
    """The OpenAI-shaped error's message, else the body's start."""
    try:
        body = e.read().decode("utf-8", "replace")
    except OSError:
        return str(e.reason)
    try:
        error = json.loads(body).get("error")
        return error.get("message", body) if isinstance(error, dict) else str(error or body)
    except (json.JSONDecodeError, AttributeError):
        return body[:200]


def _retry_after(value: str | None, attempt: int) -> float:
    try:
        return max(0.0, float(value)) if value is not None else min(2.0 ** attempt, 30.0)
    except ValueError:
        return min(2.0 ** attempt, 30.0)


def open_lm(model: str | None = None, adapter: str | None = None, base_url: str | None = None, **kw) -> LM:
    """A ``ServerLM`` when ``base_url`` is given (``model`` then names the served model), else a ``LocalLM`` over
    the model directory ``model`` (+ ``adapter``); ``kw`` go to the class."""
    if base_url is not None:
        if adapter is not None:
            raise LmstackError("an adapter applies to a local model; a server serves its own (drop --adapter)")
        return ServerLM(base_url, model, **kw)
    if model is None:
        raise LmstackError("give a model directory (--model) or a server URL (--base-url)")
    return LocalLM(model, adapter, **kw)
