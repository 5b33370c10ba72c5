"""Preference records as token ids: the chat template renders the prompt (opening the assistant's turn), and each
answer is what the template writes after it, up to and including the turn-end token.

    prompt ids  = ChatFormat.encode(prompt, add_generation_prompt=True)
    answer ids  = ChatFormat.encode(prompt + [assistant: reply], add_generation_prompt=False)[len(prompt ids):]
                  cut after the first turn-end id (ChatML's "<|im_end|>"; the newline after it is not the answer's)

so the loss masks and log-probabilities of every alignment objective cover exactly the answer tokens, as
trl's. An answer longer than the context leaves is cut to fit (counted); a prompt that leaves no room for an
answer is an error naming its record.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmstack.data.preferences import Preference, PromptRecord, Unpaired
from lmstack.errors import LmstackError
from lmstack.text.chat import ChatFormat


@dataclass(frozen=True)
class PairExample:
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    where: str


@dataclass(frozen=True)
class LabelledExample:
    """An unpaired answer (KTO): desirable when ``label``."""
    prompt: list[int]
    completion: list[int]
    label: bool
    where: str


def prompt_ids(chat: ChatFormat, messages: list[dict], max_len: int, room: int, where: str) -> list[int]:
    """The rendered prompt, opening the assistant's turn; it must leave ``room`` tokens of ``max_len``."""
    ids = chat.encode(messages, add_generation_prompt=True)
    if len(ids) + room > max_len:
        raise LmstackError(f"{where}: the prompt is {len(ids)} tokens, which leaves no room for a {room}-token "
                           f"answer in the {max_len}-token context; shorten it or raise max_len")
    return ids


def drop_long(chat: ChatFormat, records: list, max_len: int, room: int = 1) -> tuple[list, int]:
    """The records whose rendered prompt leaves ``room`` answer tokens of ``max_len``, and how many do not (for
    real data sets and small models: ``--skip_long``; without it a prompt that does not fit is an error)."""
    kept = [r for r in records if len(chat.encode(r.prompt, add_generation_prompt=True)) + room <= max_len]
    return kept, len(records) - len(kept)


def answer_ids(chat: ChatFormat, messages: list[dict], prompt: list[int], reply: str, where: str) -> list[int]:
    """The tokens the template writes for ``reply`` after ``prompt`` (the rendered ``messages``), to the turn end.
    An empty reply (a sampled answer that ends its turn at once) is the turn-end token alone."""
    if not reply:
        end = chat.tokenizer.token_to_id(chat.turn_end) if chat.turn_end else chat.tokenizer.eos_id
        if end is None:
            raise LmstackError(f"{where}: an empty answer, and the tokenizer has no turn-end or eos token to write it")
        return [end]
    full = chat.encode([*messages, {"role": "assistant", "content": reply}], add_generation_prompt=False)
    if full[:len(prompt)] != prompt:
        raise LmstackError(f"{where}: the chat template renders the prompt differently when an answer follows; "
                           "answers cannot be separated from it")
    answer = full[len(prompt):]
    for i, token in enumerate(answer):
        if token in chat.end_ids:
            return answer[:i + 1]
    return answer


def encode_pairs(chat: ChatFormat, records: list[Preference], max_len: int) -> tuple[list[PairExample], dict]:
    """Every comparison as ids; answers cut to ``max_len - len(prompt)`` tokens. Returns the examples and counts
    (``pairs``, ``truncated``, ``dropped``: pairs whose answers became identical when cut)."""
    out, truncated, dropped = [], 0, 0
    for r in records:
        prompt = prompt_ids(chat, r.prompt, max_len, 1, r.where)
        room = max_len - len(prompt)
        chosen, rejected = (answer_ids(chat, r.prompt, prompt, a, r.where) for a in (r.chosen, r.rejected))
        if max(len(chosen), len(rejected)) > room:
            truncated += 1
            chosen, rejected = chosen[:room], rejected[:room]
        if chosen == rejected:
            if r.chosen == r.rejected:
                raise LmstackError(f"{r.where}: chosen and rejected are the same answer")
            dropped += 1
            continue
        out.append(PairExample(prompt, chosen, rejected, r.where))
    if not out:
        raise LmstackError(f"no usable preference pairs ({dropped} became identical when cut to {max_len} tokens)")
    return out, {"pairs": len(out), "truncated": truncated, "dropped": dropped}


def encode_unpaired(chat: ChatFormat, records: list[Unpaired], max_len: int) -> tuple[list[LabelledExample], dict]:
    """Every labelled answer as ids, cut to fit (counted)."""
    out, truncated = [], 0
    for r in records:
        prompt = prompt_ids(chat, r.prompt, max_len, 1, r.where)
        completion = answer_ids(chat, r.prompt, prompt, r.completion, r.where)
        if len(completion) > max_len - len(prompt):
            truncated, completion = truncated + 1, completion[:max_len - len(prompt)]
        out.append(LabelledExample(prompt, completion, r.label, r.where))
    if not out:
        raise LmstackError("no labelled answers")
    return out, {"examples": len(out), "desirable": sum(e.label for e in out), "truncated": truncated}


def encode_prompts(chat: ChatFormat, records: list[PromptRecord], max_len: int, max_new_tokens: int) -> list[list[int]]:
    """Each RL prompt as ids, with room for ``max_new_tokens`` sampled tokens."""
    return [prompt_ids(chat, r.prompt, max_len, max_new_tokens, r.where) for r in records]


def draw(n: int, batch_size: int, rng: torch.Generator) -> list[int]:
    """``batch_size`` indices of ``n`` examples, uniformly with replacement from ``rng`` (so a resumed run draws the
    same ones)."""
    return torch.randint(0, n, (batch_size,), generator=rng).tolist()
