"""Continuous batching: many requests decoded together, one token each per step, by one engine thread.

At every step the scheduler admits waiting requests into free cache slots (prefilling each prompt into its
own slot), decodes one token for every running request at once, and retires the finished and the cancelled,
so a short request never waits for a long one (Orca, Yu et al. 2022; vLLM). Running requests always fill
slots ``0..n-1``: a retired request's slot takes the last one's cache rows, so a step reads plain views.

The model is only ever touched from the engine thread. Other threads (the asyncio server, a terminal)
``submit`` requests and receive ``Event``s through the request's ``emit`` callback, called on the engine
thread; ``call`` runs any other model work (embeddings) there between steps.

A request with a ``constraint`` (structured outputs, ``lmstack.generate.grammar``) has its row's scores masked
by its grammar before its processors, and the token picked moves the grammar on; such a row never takes the
batch's plain argmax.

The engine decodes a logit source (``lmstack.model.source``): the source makes the slot cache and fills
whatever it keeps before a prompt (say, trained positions of an adapter) when a slot is prefilled.

With a ``drafter`` (``generate.speculative``: a draft model or prompt lookup), a step is speculative for every
running request without a grammar or logprobs: each drafts up to k tokens, one forward pass reads every row's
pending token and its draft (rows padded to the longest draft, each at its own cache offset), and each row keeps
the prefix ``speculative.verify`` accepts plus one token of the model's own; its slot is cut back to what it
kept. Greedy rows make exactly the tokens plain steps make; sampled rows keep their distribution.
"""

from __future__ import annotations

import collections
import copy
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from collections.abc import Callable, Iterator

import torch

from lmstack.text.tokenizer import Tokenizer
from lmstack.errors import LmstackError
from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import processed_scores
from lmstack.generate.grammar import Constraint
from lmstack.generate.processors import DecodeState, LogitsProcessorList, logits_processors, pick, sampler
from lmstack.generate.speculative import Drafter, processed, verify
from lmstack.text.stream import TextStream
from lmstack.model import Transformer
from lmstack.model.blocks import KVCache, attention_mask
from lmstack.model.config import ModelConfig
from lmstack.model.source import LogitSource, ModelSource, to_source


class EngineBusy(LmstackError):
    """The waiting queue is full: the client should retry later."""


class SlotCache(KVCache):
    """A KV cache with one slot (batch row) per running request, each at its own position.

    ``use(start, stop)`` picks the rows the next forward pass reads and writes: one row to prefill a prompt
    into (``start(slot)`` empties it first), or rows ``0..n-1`` for a decoding step of one token each.
    """

    def __init__(self, config: ModelConfig, slots: int, max_len: int, device=None, dtype=torch.float32):
        super().__init__(config, slots, max_len, device, dtype)
        self.lengths = [0] * slots  # tokens cached in each slot
        self.rows = range(0)
        self.offsets = torch.zeros(0, dtype=torch.long, device=device)  # lengths of ``rows``, on the device

    def start(self, slot: int) -> None:
        """Empty ``slot`` and use it alone: a new request is prefilled there."""
        self.lengths[slot] = 0
        self.use(slot, slot + 1)

    def use(self, start: int, stop: int) -> None:
        self.rows = range(start, stop)
        lengths = self.lengths[start:stop]
        self.pos = max(lengths)  # what the model checks against its context
        self.offsets = torch.tensor(lengths, dtype=torch.long, device=self.k[0].device)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi, T = self.rows.start, self.rows.stop, k.size(2)
        if hi - lo == 1:
            start = self.lengths[lo]
            self.k[layer][lo:hi, :, start:start + T] = k
            self.v[layer][lo:hi, :, start:start + T] = v
        elif T == 1:
            rows = torch.arange(lo, hi, device=k.device)
            self.k[layer][rows, :, self.offsets] = k[:, :, 0]
            self.v[layer][rows, :, self.offsets] = v[:, :, 0]
        else:  # a speculative step: T tokens a row, each row from its own offset
            rows = torch.arange(lo, hi, device=k.device)[:, None]
            at = self.offsets[:, None] + torch.arange(T, device=k.device)  # [n, T]
            self.k[layer][rows, :, at] = k.transpose(1, 2)
            self.v[layer][rows, :, at] = v.transpose(1, 2)
        end = self.pos + T
        return self.k[layer][lo:hi, :, :end], self.v[layer][lo:hi, :, :end]

    def mask(self, T: int, key_mask: torch.Tensor | None) -> torch.Tensor | None:
        """Each row's query sees its own cached tokens only (a slot's stale tail is hidden)."""
        if len(self.rows) == 1 or len(set(self.lengths[self.rows.start:self.rows.stop])) == 1:
            return attention_mask(T, self.pos, None, self.k[0].device)
        device = self.k[0].device
        keys = torch.arange(self.pos + T, device=device)
        last = self.offsets[:, None] + torch.arange(T, device=device)  # [n, T]: the last key each query sees
        return (keys <= last[:, :, None])[:, None]

    def advance(self, T: int) -> None:
        for r in self.rows:
            self.lengths[r] += T
        self.pos += T

    def move(self, src: int, dst: int) -> None:
        """Copy slot ``src`` into slot ``dst`` (a retired request's slot takes the last running one)."""
        n = self.lengths[src]
        for k, v in zip(self.k, self.v):
            k[dst, :, :n] = k[src, :, :n]
            v[dst, :, :n] = v[src, :, :n]
        self.lengths[dst] = n


@dataclass
class Event:
    """What a request receives: after each token its newly shown text, and a last event with ``finish``.

    ``finish`` is "stop" (an end token or a stop string), "length" (the token budget or the context ran
    out), "cancelled" or "error" (``error`` says why). ``logprob``/``top`` are set when logprobs were asked.
    """
    text: str = ""
    token: int | None = None
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None
    finish: str | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(eq=False)
class Request:
    prompt: list[int]
    config: GenerationConfig
    emit: Callable[[Event], None]
    stop_ids: frozenset[int] = frozenset()
    logprobs: int | None = None  # None: off; k: the chosen token's log-probability and the k most likely
    constraint: Constraint | None = None  # structured output: the grammar state this request's tokens follow
    cancelled: bool = False


@dataclass(eq=False)
class _Running:
    request: Request
    stream: TextStream
    budget: int
    processors: LogitsProcessorList  # empty for plain greedy: the batch's argmax is taken as it is
    state: DecodeState
    rng: torch.Generator | None  # sampling only
    tokens: list[int] = field(default_factory=list)
    drafter: Drafter | None = None  # this request's own (a draft model keeps a cache per request)


class Engine:
    """Decode submitted requests in one thread with continuous batching over ``slots`` cache slots."""

    def __init__(self, model: Transformer | LogitSource, tokenizer: Tokenizer, slots: int = 16, max_queue: int = 64,
                 max_len: int | None = None, drafter: Drafter | None = None):
        self.model, self.source, self.tokenizer = model, to_source(model), tokenizer  # embeddings read the model
        if drafter is not None and not isinstance(self.source, ModelSource):
            raise LmstackError("speculative decoding needs a plain model (merge a LoRA adapter; a prefix, prompt or "
                               "mixture source has no multi-token verify pass here)")
        self.drafter = drafter
        self.device = self.source.device
        self.max_len = min(max_len or self.source.context, self.source.context)
        self.cache = self.source.new_cache(slots, self.max_len, cache_cls=SlotCache)
        self.slots, self.max_queue = slots, max_queue
        self.waiting: collections.deque[Request] = collections.deque()
        self.running: list[_Running] = []
        self.calls: collections.deque[tuple[Callable, Future]] = collections.deque()
        self.steps = 0
        self.prompt_tokens = self.generated_tokens = 0  # read by /metrics (written on the engine thread)
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="lmstack-engine", daemon=True)

    # ----------------------------------------------------------------------------------- any thread

    def start(self) -> Engine:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join()

    def submit(self, request: Request) -> Request:
        """Queue ``request``; raises ``EngineBusy`` when every slot is taken and ``max_queue`` requests wait."""
        if not request.prompt:
            raise LmstackError("the prompt is empty")
        if len(request.prompt) >= self.max_len:
            raise LmstackError(f"the prompt is {len(request.prompt)} tokens but the context is {self.max_len}")
        with self._wake:
            free = self.slots - len(self.running)  # the engine admits that many at its next step
            if len(self.waiting) >= self.max_queue + free:
                raise EngineBusy(f"all {self.slots} slots are busy and {self.max_queue} requests are waiting; "
                                 "retry shortly")
            self.waiting.append(request)
            self._wake.notify()
        return request

    def cancel(self, request: Request) -> None:
        """Drop ``request``: at once if it is waiting, at the next step (freeing its slot) if running."""
        with self._wake:
            request.cancelled = True
            if request in self.waiting:
                self.waiting.remove(request)
            self._wake.notify()

    def call(self, fn: Callable[[], object]) -> Future:
        """Run ``fn`` on the engine thread between two steps; its result arrives in the returned future."""
        future: Future = Future()
        with self._wake:
            self.calls.append((fn, future))
            self._wake.notify()
        return future

    def stream(self, request: Request) -> Iterator[Event]:
        """Submit ``request`` (its ``emit`` is replaced) and yield its events here, blocking; closing the
        iterator early cancels the request."""
        events: queue.Queue[Event] = queue.Queue()
        request.emit = events.put
        self.submit(request)
        try:
            while True:
                event = events.get()
                yield event
                if event.finish:
                    return
        finally:
            self.cancel(request)

    def stats(self) -> dict:
        return {"running": len(self.running), "waiting": len(self.waiting), "slots": self.slots, "steps": self.steps,
                "prompt_tokens": self.prompt_tokens, "generated_tokens": self.generated_tokens}

    # ----------------------------------------------------------------------------------- engine thread

    @torch.inference_mode()
    def _loop(self) -> None:
        while True:
            with self._wake:
                while not (self.waiting or self.running or self.calls or self._stopping):
                    self._wake.wait()
                if self._stopping:
                    break
                calls, admitted = list(self.calls), []
                self.calls.clear()
                while self.waiting and len(self.running) + len(admitted) < self.slots:
                    admitted.append(self.waiting.popleft())
            for fn, future in calls:
                _run_call(fn, future)
            self._retire([(i, Event(finish="cancelled")) for i, r in enumerate(self.running) if r.request.cancelled])
            for request in admitted:
                try:
                    self._prefill(request)
                except Exception as e:  # a failed request fails alone, never the engine
                    if self.running and self.running[-1].request is request:
                        self.running.pop()
                    request.emit(Event(finish="error", error=f"{type(e).__name__}: {e}"))
            try:
                if self.running:
                    self._step()
            except Exception as e:
                for r in self.running:
                    r.request.emit(Event(finish="error", error=f"{type(e).__name__}: {e}"))
                self.running.clear()
        for request in [*(r.request for r in self.running), *self.waiting]:
            request.emit(Event(finish="cancelled"))
        for _, future in self.calls:
            future.cancel()

    def _prefill(self, request: Request) -> None:
        self.cache.start(len(self.running))
        self.prompt_tokens += len(request.prompt)
        logits = self.source.prefill(torch.tensor([request.prompt], dtype=torch.long, device=self.device), self.cache)
        config = request.config
        state = DecodeState.start([request.prompt], config, self.source.vocab_size, self.device)
        budget = min(config.max_new_tokens, self.max_len - len(request.prompt))
        drafter = None
        if self.drafter is not None and request.constraint is None and request.logprobs is None:
            drafter = copy.copy(self.drafter)
            drafter.start(request.prompt, config, self.tokenizer.eos_id, self.max_len, self.source.vocab_size)
        self.running.append(_Running(request, TextStream(self.tokenizer, config.stop), budget,
                                     logits_processors(config, self.tokenizer.eos_id), state,
                                     sampler(config, self.device), drafter=drafter))
        self._advance(logits)

    def _step(self) -> None:
        if self.drafter is not None and all(r.drafter is not None for r in self.running):
            return self._speculative_step()
        n = len(self.running)
        self.cache.use(0, n)
        # each row's last token, at its position among the request's real tokens
        rows = torch.tensor([[r.tokens[-1], len(r.request.prompt) + len(r.tokens) - 1] for r in self.running],
                            dtype=torch.long, device=self.device)
        logits = self.source.step(rows[:, 0], self.cache, rows[:, 1:])
        self.steps += 1
        self._advance(logits)

    def _speculative_step(self) -> None:
        """One verify pass over every running request (see the module docstring)."""
        n = len(self.running)
        self.cache.use(0, n)
        room = self.max_len - self.cache.pos - 1  # the padded rows must fit the longest slot's context
        drafts = []
        for r in self.running:
            k = min(r.drafter.num_draft, r.budget - len(r.tokens) - 1, room)
            drafts.append(r.drafter.propose(r.request.prompt + r.tokens, r.state, k, r.rng) if k > 0 else ([], None))
        T = 1 + max(len(d) for d, _ in drafts)
        idx = torch.tensor([[r.tokens[-1], *d, *[0] * (T - 1 - len(d))] for r, (d, _) in zip(self.running, drafts)],
                           dtype=torch.long, device=self.device)
        start = [len(r.request.prompt) + len(r.tokens) - 1 for r in self.running]  # each pending token's position
        positions = torch.tensor(start, device=self.device)[:, None] + torch.arange(T, device=self.device)
        logits = self.source.model(idx, self.cache, positions)  # [n, T, V]
        self.steps += 1
        finished = []
        for i, (r, (draft, q)) in enumerate(zip(self.running, drafts)):
            scores = processed(r.processors, r.state, logits[i, :len(draft) + 1], draft)
            kept, token = verify(scores, draft, q, r.request.config.do_sample, r.rng)
            self.cache.lengths[i] = start[i] + 1 + kept  # the pending token and the drafts kept
            for t in draft[:kept] + [token]:
                event = self._event(r, t, None)
                if event.finish:
                    finished.append((i, event))
                    break
                r.request.emit(event)
        self._retire(finished)

    def _advance(self, logits: torch.Tensor) -> None:
        """Pick the next token of the last ``len(logits)`` running requests, emit it, retire the finished."""
        first = len(self.running) - logits.size(0)
        scores = logits.float()
        tokens = scores.argmax(dim=-1)
        for i, r in enumerate(self.running[first:]):
            constraint = r.request.constraint
            if r.processors or r.rng is not None or constraint is not None:  # plain greedy keeps the argmax
                live = None if constraint is None else [constraint]
                tokens[i] = pick(processed_scores(scores[i:i + 1], live, r.processors, r.state), r.rng)[0]
        finished = []
        for i, (r, token) in enumerate(zip(self.running[first:], tokens.tolist())):
            event = self._event(r, token, scores[i])
            if event.finish:
                finished.append((first + i, event))
            else:
                r.request.emit(event)
        self._retire(finished)

    def _event(self, r: _Running, token: int, scores: torch.Tensor | None) -> Event:
        """Append ``token`` to ``r``; the event that tells its request (``scores`` [V]: for the logprobs asked
        for), which ``finish`` says ends it."""
        self.generated_tokens += 1
        r.tokens.append(token)
        r.state.push([token])
        event = Event(token=token, prompt_tokens=len(r.request.prompt), completion_tokens=len(r.tokens))
        if r.request.logprobs is not None:
            event.logprob, event.top = _logprobs(scores, token, r.request.logprobs)
        event.error = _follow(r.request.constraint, token)
        if event.error:  # the grammar left no token to pick: this request fails alone
            event.finish = "error"
        elif token in r.request.stop_ids:
            event.text, event.finish = r.stream.finish(), "stop"
        else:
            event.text = r.stream.push(token)
            if r.stream.done:
                event.finish = "stop"
            elif len(r.tokens) >= r.budget:
                event.text += r.stream.finish()
                event.finish = "length"
        return event

    def _retire(self, finished: list[tuple[int, Event]]) -> None:
        """Free the slots of ``running[i]`` for each (i, last event), then send each request its last event (so a
        client holding it finds the slot free)."""
        requests = [(self.running[i].request, event) for i, event in finished]
        for i in sorted((i for i, _ in finished), reverse=True):
            last = len(self.running) - 1
            if i != last:
                self.cache.move(last, i)
                self.running[i] = self.running[last]
            self.running.pop()
        for request, event in requests:
            request.emit(event)

def _logprobs(scores: torch.Tensor, token: int, k: int) -> tuple[float, list[tuple[int, float]]]:
    """The chosen token's log-probability under the model and the ``k`` most likely tokens'."""
    logp = scores.log_softmax(dim=-1)
    top = torch.topk(logp, k) if k else None
    return float(logp[token]), ([] if top is None else list(zip(top.indices.tolist(), top.values.tolist())))


def _follow(constraint: Constraint | None, token: int) -> str | None:
    """Move ``constraint`` past ``token``; what went wrong, if anything."""
    if constraint is None:
        return None
    try:
        constraint.advance(token)
    except LmstackError as e:
        return str(e)
    return None


def _run_call(fn: Callable[[], object], future: Future) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(fn())
    except Exception as e:  # handed to the caller, who decides what it means
        future.set_exception(e)
