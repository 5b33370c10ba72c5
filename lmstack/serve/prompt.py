"""From a request to token ids: loading the model to serve, and encoding conversations safely.

A conversation's text comes from the chat template, and the template's own markers (``<|im_start|>``...)
must become special tokens, while the same strings typed by a user must not: otherwise a message could
close its turn and open a forged system turn. ``encode_chat`` keeps the common case byte-identical to how
training encodes the rendered text, and encodes contents as plain text only when they hold a marker.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lmstack.adapt.lora import merge
from lmstack.adapt.methods import load_adapted
from lmstack.text.tokenizer import IM_END, Tokenizer
from lmstack.errors import LmstackError
from lmstack.generate.layout import decode_layout
from lmstack.model import Transformer

_HOLE = "\ue000{}\ue001"  # private-use characters around a message number: a content placeholder
_HOLES = re.compile("\ue000(\\d+)\ue001")


def load_for_serving(model_dir: str | Path, adapter_dir: str | Path | None = None,
                     device: str = "cpu") -> tuple[Transformer, Tokenizer]:
    """The model (eval mode, laid out for one-token steps) and tokenizer of a model directory, with an adapter
    applied: a LoRA adapter is merged into the weights (the base model's speed), the others stay modules."""
    model, tokenizer = load_adapted(model_dir, adapter_dir, device=device)
    model = merge(model).eval()
    if model.tok_emb.weight.device.type == "cpu":
        decode_layout(model)
    return model, tokenizer


def end_ids(tokenizer: Tokenizer, chat: bool) -> frozenset[int]:
    """The tokens that end a reply: eos, and for a chat turn the end-of-turn marker too."""
    ids = {tokenizer.eos_id, tokenizer.token_to_id(IM_END) if chat else None}
    return frozenset(i for i in ids if i is not None)


def special_strings(tokenizer: Tokenizer) -> list[str]:
    return [t.content for t in tokenizer.backend.get_added_tokens_decoder().values() if t.special]


def encode_chat(tokenizer: Tokenizer, messages: list[dict], tools: list[dict] | None = None,
                add_generation_prompt: bool = True) -> list[int]:
    """Token ids of a conversation under the tokenizer's chat template, in which special-token strings
    inside message contents stay plain text (anywhere else they are refused)."""
    specials = special_strings(tokenizer)

    def marked(value: str) -> bool:
        return any(s in value for s in specials)

    if marked(json.dumps([tools, [m.get("tool_calls") for m in messages]], ensure_ascii=False)):
        raise LmstackError("tools and tool calls may not contain special tokens such as <|im_end|>")
    if not any(marked(m.get("content") or "") for m in messages):
        return tokenizer.encode(tokenizer.apply_chat_template(messages, tools, add_generation_prompt))
    holes = [{**m, "content": _HOLE.format(i)} if m.get("content") else m for i, m in enumerate(messages)]
    text = tokenizer.apply_chat_template(holes, tools, add_generation_prompt)
    parts = _HOLES.split(text)  # template text, message number, template text, ...
    numbers = [int(n) for n in parts[1::2]]
    if sorted(numbers) != [i for i, m in enumerate(messages) if m.get("content")]:
        raise LmstackError("messages may not contain special tokens such as <|im_end|> with this chat template")
    ids: list[int] = []
    for j, part in enumerate(parts):
        ids += tokenizer.encode(messages[int(part)]["content"], specials=False) if j % 2 else tokenizer.encode(part)
    return ids
