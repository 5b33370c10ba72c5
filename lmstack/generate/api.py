"""Text in, text out: ``generate`` and ``stream`` over a model and a tokenizer, and ``lmstack generate``.

    generate(model, tokenizer, "Once upon a time", max_new_tokens=50, do_sample=True, top_p=0.9, seed=0)
    for piece in stream(model, tokenizer, "Once upon a time"): print(piece, end="")

Prompts are encoded as they are (no bos token: lmstack's corpora separate documents with eos only); an
empty prompt starts from the bos token, or failing that the eos token (the start of a new document).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Literal
from collections.abc import Collection, Iterator

from lmstack.errors import LmstackError
from lmstack.io import read_json
from lmstack.text.chat import ChatFormat
from lmstack.text.tokenizer import Tokenizer
from lmstack.generate.beam import beam_search
from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.generate.grammar import Constraint, Grammar
from lmstack.generate.loading import DecodingDtype, load_drafter, load_for_decoding
from lmstack.generate.speculative import Drafter, SpeculativeStats, speculative_decode
from lmstack.generate.steering import controlled, steer
from lmstack.text.stream import TextStream
from lmstack.model import Transformer
from lmstack.model.source import LogitSource, to_source


FLUSH_EVERY_S = 0.05  # how often ``lmstack generate`` flushes the text it streams


def generate(model: Transformer | LogitSource, tokenizer: Tokenizer, prompt: str | list[str] | list[list[int]],
             config: GenerationConfig | None = None, stop_ids: Collection[int] = (), json_schema: dict | None = None,
             num_return_sequences: int = 1, drafter: Drafter | None = None, **overrides) -> str | list[str]:
    """The continuation of ``prompt``, or of each prompt in a list (decoded together as one batch; a prompt in
    a list may be token ids, say a conversation from ``ChatFormat.encode``).

    ``model`` is a model (decoded through its own logit source) or any logit source, such as a mixture
    (``lmstack.generate.combine``). ``overrides`` are GenerationConfig fields, e.g. ``max_new_tokens=20,
    num_beams=3``; a row also ends at a token in ``stop_ids`` (a chat turn's end), left out of the text as eos
    is. With ``json_schema`` every continuation is compact JSON valid under it, ended right after the value
    (unless ``max_new_tokens`` runs out first). For speed, see ``decode_layout`` (fp32 weights laid out for
    one-token steps) and ``compile=True``. With ``num_return_sequences`` K > 1, each prompt's K continuations
    share its prefill (``decode``) and come back as a list, prompt by prompt (K texts for one prompt, as
    transformers' ``generate`` orders them); sampled, continuation j is the one ``seed + j`` gives alone.
    With ``drafter`` (``speculative.DraftModel(small_model)`` or ``speculative.PromptLookup()``), one prompt is
    decoded speculatively: the same greedy text, the same sampling distribution, fewer passes of ``model``.
    """
    config = _config(config, overrides)
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    streams = [TextStream(tokenizer, config.stop) for _ in range(len(prompts) * num_return_sequences)]
    grammar = None if json_schema is None else Grammar.from_json_schema(
        json_schema, tokenizer, end_ids(tokenizer, stop_ids), where="json_schema")
    for _ in pieces(model, tokenizer, prompts, config, streams, stop_ids, grammar, num_return_sequences, drafter):
        pass
    texts = [s.text for s in streams]
    return texts[0] if isinstance(prompt, str) and num_return_sequences == 1 else texts


def stream(model: Transformer | LogitSource, tokenizer: Tokenizer, prompt: str, config: GenerationConfig | None = None,
           json_schema: dict | None = None, **overrides) -> Iterator[str]:
    """The continuation of ``prompt`` as text pieces, each yielded as soon as it is complete (JSON valid under
    ``json_schema`` when one is given)."""
    config = _config(config, overrides)
    grammar = None if json_schema is None else Grammar.from_json_schema(
        json_schema, tokenizer, end_ids(tokenizer), where="json_schema")
    for _, piece in pieces(model, tokenizer, [prompt], config, [TextStream(tokenizer, config.stop)], grammar=grammar):
        if piece:
            yield piece


def end_ids(tokenizer: Tokenizer, stop_ids: Collection[int] = ()) -> frozenset[int]:
    """The tokens that end a row: eos and ``stop_ids``."""
    return frozenset({tokenizer.eos_id, *stop_ids} - {None})


def pieces(model: Transformer | LogitSource, tokenizer: Tokenizer, prompts: list[str] | list[list[int]],
           config: GenerationConfig, streams: list[TextStream], stop_ids: Collection[int] = (),
           grammar: Grammar | None = None, num_return_sequences: int = 1, drafter: Drafter | None = None,
           stats: SpeculativeStats | None = None) -> Iterator[tuple[int, str]]:
    """(row, text piece) for a batch of prompts (texts or token ids), in the order they are made;
    ``streams[row]`` holds each row's tokens and text. Decoding stops early once every row has met eos, a
    token in ``stop_ids`` or a stop string. With ``grammar`` (built with ``end_ids(tokenizer, stop_ids)``),
    every row is constrained by it. With ``num_return_sequences`` K, row b * K + j is the j-th continuation
    of prompt b (one prefill per prompt; ``streams`` has B * K). With ``drafter``, speculative decoding of one
    prompt (``stats`` counts its passes and accepted drafts)."""
    ids = [_encode(tokenizer, p) for p in prompts]
    eos, open_rows = tokenizer.eos_id, len(streams)
    if len(streams) != len(ids) * num_return_sequences:
        raise ValueError(f"{len(streams)} streams for {len(ids)} prompts x {num_return_sequences}")
    ends = end_ids(tokenizer, stop_ids)
    constraints = None if grammar is None else [grammar.constraint() for _ in streams]
    for row, token in _tokens(model, ids, config, eos, constraints, num_return_sequences, drafter, stats):
        s = streams[row]
        if s.done:
            continue
        yield row, s.finish() if token in ends else s.push(token)
        open_rows -= s.done
        if not open_rows:
            return
    for row, s in enumerate(streams):
        if not s.done:
            yield row, s.finish()


def _tokens(model: Transformer | LogitSource, ids: list[list[int]], config: GenerationConfig,
            eos: int | None, constraints: list[Constraint] | None = None, num_return_sequences: int = 1,
            drafter: Drafter | None = None, stats: SpeculativeStats | None = None) -> Iterator[tuple[int, int]]:
    """(row, token) as the decoder makes them: step by step across the batch, beam search row by row, or
    speculatively (one prompt)."""
    if drafter is not None:
        if len(ids) != 1 or num_return_sequences != 1 or constraints is not None:
            raise LmstackError("speculative decoding takes one prompt, one sequence and no JSON schema")
        for token in speculative_decode(model, ids[0], config, drafter, eos, stats):
            yield 0, token
        return
    source = to_source(model, config.compile)
    if config.num_beams > 1:
        if constraints is not None:
            raise LmstackError("beam search does not support structured outputs (a JSON schema); use num_beams=1")
        if num_return_sequences > 1:
            raise LmstackError("beam search returns one sequence per prompt here; use num_beams=1 for K samples")
        for row, prompt in enumerate(ids):
            for token in beam_search(source, prompt, config, eos):
                yield row, token
        return
    for tokens in decode(source, ids, config, eos, constraints, num_return_sequences):
        yield from enumerate(tokens.tolist())


def _encode(tokenizer: Tokenizer, prompt: str | list[int]) -> list[int]:
    if not isinstance(prompt, str):
        return list(prompt)
    start = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
    return tokenizer.encode(prompt) or ([start] if start is not None else [])


def _config(config: GenerationConfig | None, overrides: dict) -> GenerationConfig:
    return dataclasses.replace(config or GenerationConfig(), **overrides)


def generate_cli(prompt: list[str], model: str = "runs/demo/train/model", adapter: str | None = None,
                 chat: bool = False, max_new_tokens: int = 64,
                 min_new_tokens: int = 0, do_sample: bool = False, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, repetition_penalty: float = 1.0, num_beams: int = 1,
                 length_penalty: float = 1.0, early_stopping: bool | Literal["never"] = False,
                 stop: list[str] | None = None, seed: int | None = None, compile: bool = False,
                 dtype: DecodingDtype = "auto", stream: bool = True,
                 json_schema: str | None = None, draft: str | None = None, prompt_lookup: int = 0,
                 num_draft: int = 4, control: str | None = None, expert: str | None = None,
                 anti_expert: str | None = None, alpha: float = 1.0, amateur: str | None = None,
                 plausibility: float = 0.1) -> dict:
    """Continue one or more prompts with a model directory (greedy by default).

    Args:
        prompt: the text(s) to continue; several are decoded together as one batch
        model: model directory (config.json, model.safetensors, tokenizer.json)
        adapter: adapter directory to apply (LoRA, bottleneck adapter, prefix or prompt; from lmstack finetune)
        chat: treat each prompt as a user message: render it with the chat template and stop at the turn's end
        max_new_tokens: the most tokens to generate per prompt
        min_new_tokens: eos is forbidden until this many tokens are made
        do_sample: sample instead of greedy/beam decoding
        temperature: sampling temperature (needs --do-sample)
        top_k: sample from the k most probable tokens, 0 = all (needs --do-sample)
        top_p: nucleus sampling: the smallest set of tokens holding this probability (needs --do-sample)
        repetition_penalty: > 1 discourages tokens already present (CTRL)
        num_beams: beam search with this many beams (1 = off)
        length_penalty: beam score = sum log p / length ** length_penalty
        early_stopping: beam search stops when num_beams are finished: true, false (heuristic) or never
        stop: stop strings, cut from the output
        seed: sampling seed (same seed, same text)
        compile: torch.compile the decode step (slow to start, faster per token)
        dtype: weights dtype: auto = bfloat16 where bf16 is native and the model is large enough to gain (its
            weights over 64 MB), else float32
        stream: print the text as it is made (one prompt, without --json)
        json_schema: a JSON schema file: every completion is compact JSON valid under it (greedy or sampled)
        draft: a smaller model directory with the same tokenizer: speculative decoding (same greedy text, same
            sampling distribution; one prompt)
        prompt_lookup: speculative decoding drafted by n-gram lookup in the text so far, n up to this (0 = off)
        num_draft: tokens drafted per target pass (with --draft or --prompt-lookup)
        control: a control code attribute=label (CTRL; a model from lmstack train-control): its tag goes in
            front of each prompt; an unknown code is refused, listing the model's
        expert: DExperts expert: a model directory with the same tokenizer, or an adapter for --model
        anti_expert: DExperts anti-expert (as --expert); with --do-sample, --top-p filters the base model's
            logits before the experts are added (Liu et al. 2021)
        alpha: DExperts strength: z_base + alpha (z_expert - z_anti); 0 = the base model, < 0 steers away
        amateur: contrastive decoding: a weaker model directory or adapter whose log-probabilities are subtracted
        plausibility: contrastive decoding keeps tokens with p >= plausibility * max p under --model
    """
    schema = None if json_schema is None else read_json(json_schema)
    if schema is not None and not isinstance(schema, dict):
        raise LmstackError(f"{json_schema}: a JSON schema must be a JSON object, got {type(schema).__name__}")
    config = GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=do_sample,
                              temperature=temperature, top_k=top_k, top_p=top_p,
                              repetition_penalty=repetition_penalty, num_beams=num_beams,
                              length_penalty=length_penalty, early_stopping=early_stopping, stop=stop or [],
                              seed=seed, compile=compile)
    if (draft is not None or prompt_lookup) and (num_beams > 1 or len(prompt) > 1 or schema is not None):
        raise LmstackError("speculative decoding (--draft / --prompt-lookup) takes one prompt, no beams, no schema")
    if (draft is not None or prompt_lookup) and (expert or anti_expert or amateur):
        raise LmstackError("speculative decoding (--draft / --prompt-lookup) does not combine with steering")
    if control is not None and chat:
        raise LmstackError("--control tags plain text to continue; drop --chat")
    net, tokenizer = load_for_decoding(model, adapter, dtype=dtype)
    net, config = steer(net, tokenizer, model, config, expert, anti_expert, alpha, amateur, plausibility, dtype=dtype)
    drafter = load_drafter(tokenizer, draft, prompt_lookup, num_draft, dtype=dtype)
    inputs, stop_ids = prompt, frozenset()
    if chat:
        chat_format, turns = ChatFormat(tokenizer), [[{"role": "user", "content": p}] for p in prompt]
        prompt, inputs = [chat_format.render(t) for t in turns], [chat_format.encode(t) for t in turns]
        stop_ids = chat_format.end_ids
    if control is not None:
        inputs = controlled(tokenizer, inputs, control, [adapter, model])
    grammar = None if schema is None else Grammar.from_json_schema(schema, tokenizer, end_ids(tokenizer, stop_ids),
                                                                    where=json_schema)
    live = stream and len(prompt) == 1  # with --json the CLI sends this to stderr
    streams = [TextStream(tokenizer, config.stop) for _ in prompt]
    stats = SpeculativeStats() if drafter is not None else None
    start = flushed = time.perf_counter()
    for _, piece in pieces(net, tokenizer, inputs, config, streams, stop_ids, grammar, drafter=drafter, stats=stats):
        if live:  # flushed every 50 ms at most: a terminal write per token costs as much as a small model's step
            now = time.perf_counter()
            due = now - flushed > FLUSH_EVERY_S
            print(piece, end="", flush=due)
            flushed = now if due else flushed
    seconds = time.perf_counter() - start
    if live:
        print()
    tokens = [len(s.ids) for s in streams]
    one = len(prompt) == 1
    return {"prompt": prompt[0] if one else prompt, "completion": streams[0].text if one else [s.text for s in streams],
            "tokens": tokens[0] if one else tokens, "tokens_per_s": sum(tokens) / seconds,
            **({"speculative": stats.as_dict()} if stats is not None else {})}
