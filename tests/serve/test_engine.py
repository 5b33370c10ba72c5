"""The continuous-batching engine: every request decodes exactly as it would alone, slots are freed at once."""

from __future__ import annotations

import queue
import threading

import pytest
import torch

from lmstack.errors import LmstackError
from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.generate.grammar import Grammar
from lmstack.serve.engine import Engine, EngineBusy, Event, Request

from .conftest import random_model


def alone(model, prompt: list[int], config: GenerationConfig) -> list[int]:
    """What ``lmstack.generate`` makes of one prompt by itself (no end tokens)."""
    return [int(t) for t in decode(model, [prompt], config)]


def collect() -> tuple[list[Event], callable]:
    events: list[Event] = []
    return events, events.append


def run_all(engine: Engine, prompts: list[list[int]], configs: list[GenerationConfig]) -> list[list[Event]]:
    """Each request's events, all submitted before ``engine`` starts, once every one has finished."""
    outputs = [collect() for _ in prompts]
    for p, c, (_, emit) in zip(prompts, configs, outputs):
        engine.submit(Request(p, c, emit))
    engine.start()
    try:
        while not all(events and events[-1].finish for events, _ in outputs):
            threading.Event().wait(0.01)
    finally:
        engine.stop()
    return [events for events, _ in outputs]


def _adapted(model, method: str):
    """``model`` under a PEFT method, its new weights perturbed (they start as a no-op for LoRA and adapters)."""
    from lmstack.adapt.methods import METHODS

    if method == "none":
        return model
    model = METHODS[method](**({"n_virtual": 3} if method in ("prefix", "prompt") else {})).apply(model).eval()
    torch.manual_seed(4)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.mark.parametrize("family, method", [("gpt2-tiny", "none"), ("llama-tiny", "none"), ("llama-tiny", "adapter"),
                                            ("gpt2-tiny", "prefix"), ("llama-tiny", "prompt")])
def test_continuous_batching_matches_decoding_each_request_alone(family, method):
    """The same tokens as ``decode`` gives each request alone, also with a bottleneck adapter and with the
    virtual positions of prefix and prompt tuning filled into each slot at admission."""
    model = _adapted(random_model(97, seed=3, name=family), method)
    gen = torch.Generator().manual_seed(0)
    specs = [(int(torch.randint(1, 40, (1,), generator=gen)), n) for n in (5, 30, 12, 1, 25, 8, 40, 17)]
    prompts = [torch.randint(8, 97, (length,), generator=gen).tolist() for length, _ in specs]
    configs = [GenerationConfig(max_new_tokens=n) for _, n in specs]
    configs[2] = GenerationConfig(max_new_tokens=12, do_sample=True, temperature=0.8, top_p=0.9, seed=5)
    configs[4] = GenerationConfig(max_new_tokens=25, repetition_penalty=1.3)
    engine = Engine(model, tokenizer=_Chars(), slots=3, max_queue=16)
    outputs = [collect() for _ in specs]
    requests = [Request(p, c, emit) for p, c, (_, emit) in zip(prompts, configs, outputs)]
    for r in requests[:5]:  # more requests than slots: admitted as others finish
        engine.submit(r)
    engine.start()
    try:
        while not any(e.finish for e in outputs[0][0]):
            threading.Event().wait(0.01)
        for r in requests[5:]:  # and some arrive while the batch is running
            engine.submit(r)
        while not all(events and events[-1].finish for events, _ in outputs):
            threading.Event().wait(0.01)
    finally:
        engine.stop()
    assert engine.steps > 0
    for prompt, config, (events, _) in zip(prompts, configs, outputs):
        assert [e.token for e in events] == alone(model, prompt, config)
        assert events[-1].finish == "length" and events[-1].completion_tokens == config.max_new_tokens


def test_a_mixture_of_sources_is_served_with_a_slot_cache_per_member():
    """A mixture weighted (1, 0) over a prefix-tuned model and another model decodes as the first alone: each
    member gets its own slot cache, the prefix's virtual positions filled into its slots only."""
    from lmstack.generate.combine import Mixture

    adapted, other = _adapted(random_model(97, seed=3), "prefix"), random_model(97, seed=8, name="llama-tiny")
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(8, 97, (n,), generator=gen).tolist() for n in (7, 1, 20, 3)]
    configs = [GenerationConfig(max_new_tokens=n) for n in (9, 14, 5, 11)]
    configs[1] = GenerationConfig(max_new_tokens=14, repetition_penalty=1.3)
    outputs = run_all(Engine(Mixture([adapted, other], [1.0, 0.0]), _Chars(), slots=2), prompts, configs)
    served = [[e.token for e in events] for events in outputs]  # more requests than slots: slots are reused
    assert served == [alone(adapted, p, c) for p, c in zip(prompts, configs)]


def test_end_tokens_and_stop_strings_finish_a_request():
    model = random_model(97, seed=4)
    prompt = [10, 20, 30]
    tokens = alone(model, prompt, GenerationConfig(max_new_tokens=10))
    engine = Engine(model, _Chars(), slots=2).start()
    try:
        events = list(engine.stream(Request(prompt, GenerationConfig(max_new_tokens=10), print,
                                            stop_ids=frozenset({tokens[3]}))))
        assert [e.token for e in events] == tokens[:tokens.index(tokens[3]) + 1]
        assert events[-1].finish == "stop"
        text = "".join(_Chars().decode([t]) for t in tokens)
        stop = text[5:7]
        events = list(engine.stream(Request(prompt, GenerationConfig(max_new_tokens=10, stop=[stop]), print)))
        assert "".join(e.text for e in events) == text[:text.find(stop)] and events[-1].finish == "stop"
    finally:
        engine.stop()


def test_a_cancelled_request_frees_its_slot_at_once():
    model = random_model(97, seed=5)
    engine = Engine(model, _Chars(), slots=1, max_queue=4).start()
    try:
        long = engine.stream(Request([1, 2, 3], GenerationConfig(max_new_tokens=120), print))
        first = next(long)
        long.close()  # the client went away
        events = list(engine.stream(Request([4, 5], GenerationConfig(max_new_tokens=3), print)))
        assert first.token is not None and events[-1].finish == "length"
        assert engine.steps < 60  # the long request never ran to its end
        assert engine.stats()["running"] == 0
    finally:
        engine.stop()


def test_a_full_queue_refuses_requests():
    model = random_model(97, seed=6)
    engine = Engine(model, _Chars(), slots=1, max_queue=2)  # not started: nothing leaves the queue
    results: queue.Queue = queue.Queue()
    for _ in range(3):  # one for the free slot, two waiting
        engine.submit(Request([1, 2], GenerationConfig(max_new_tokens=2), results.put))
    with pytest.raises(EngineBusy):
        engine.submit(Request([1, 2], GenerationConfig(max_new_tokens=2), results.put))
    with pytest.raises(LmstackError, match="context"):
        engine.submit(Request([1] * 1100, GenerationConfig(max_new_tokens=2), results.put))
    engine.start()
    finished = 0
    while finished < 3:
        finished += results.get(timeout=30).finish is not None
    engine.stop()


def test_work_runs_on_the_engine_thread_between_steps():
    engine = Engine(random_model(97), _Chars()).start()
    try:
        assert engine.call(lambda: threading.current_thread().name).result(timeout=10) == "lmstack-engine"
        with pytest.raises(ZeroDivisionError):
            engine.call(lambda: 1 / 0).result(timeout=10)
    finally:
        engine.stop()


class _Chars:
    """A stand-in tokenizer: token i is the character chr(65 + i % 58)."""
    eos_id = None

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(65 + i % 58) for i in ids)


def test_a_constrained_request_with_min_new_tokens_ends_where_its_grammar_does(tokenizer):
    """min_new_tokens forbids the end token that a complete grammar requires: the row then keeps the grammar's
    own choice (the end), as ``decode`` does, instead of picking from all -inf scores."""
    schema = {"type": "object", "properties": {"a": {"const": 1}}, "required": ["a"], "additionalProperties": False}
    grammar = Grammar.from_json_schema(schema, tokenizer, [tokenizer.eos_id])
    model = random_model(tokenizer.vocab_size, seed=2)
    engine = Engine(model, tokenizer, slots=2).start()
    try:
        events, emit = collect()
        done = threading.Event()
        config = GenerationConfig(max_new_tokens=40, min_new_tokens=30)
        engine.submit(Request(tokenizer.encode("x"), config, lambda e: (emit(e), e.finish and done.set()),
                              frozenset({tokenizer.eos_id}), constraint=grammar.constraint()))
        assert done.wait(60)
    finally:
        engine.stop()
    assert events[-1].finish == "stop" and events[-1].error is None
    assert "".join(e.text for e in events) == '{"a":1}'


@pytest.mark.parametrize("drafter", ["self", "other", "lookup"])
def test_speculative_steps_make_the_tokens_plain_steps_make(drafter):
    """With a drafter the engine verifies every running request's draft in one pass, rows at their own offsets:
    greedy requests (penalised ones too) get exactly the tokens ``decode`` gives each alone. Drafted by the model
    itself every draft is kept, so far fewer passes than tokens; a sampled request still gets its budget."""
    from lmstack.generate.speculative import DraftModel, PromptLookup

    model = random_model(97, seed=3, name="llama-tiny")
    draft = {"self": lambda: DraftModel(model, 3), "other": lambda: DraftModel(random_model(97, 8, "gpt2-tiny"), 3),
             "lookup": lambda: PromptLookup(2, 4)}[drafter]()
    gen = torch.Generator().manual_seed(1)
    specs = [(int(torch.randint(1, 30, (1,), generator=gen)), n) for n in (20, 7, 33, 1, 15, 26)]
    prompts = [torch.randint(8, 97, (length,), generator=gen).tolist() for length, _ in specs]
    configs = [GenerationConfig(max_new_tokens=n) for _, n in specs]
    configs[1] = GenerationConfig(max_new_tokens=7, repetition_penalty=1.3)
    configs[5] = GenerationConfig(max_new_tokens=26, do_sample=True, temperature=0.9, seed=2)
    engine = Engine(model, tokenizer=_Chars(), slots=3, max_queue=16, drafter=draft)
    for prompt, config, events in zip(prompts, configs, run_all(engine, prompts, configs)):
        assert events[-1].finish == "length" and events[-1].completion_tokens == config.max_new_tokens
        if not config.do_sample:
            assert [e.token for e in events] == alone(model, prompt, config)
    if drafter == "self":
        assert engine.steps < sum(n for _, n in specs) / 2
