"""``lmstack chat-eval``: how often a chat model's reply is exactly the reference reply.

Each test conversation is cut before its last assistant turn; the model continues it greedily (prompts
batched) and the reply is compared with the reference after stripping surrounding whitespace. Exact match
is strict on purpose: the synthetic answers are deterministic sentences, so anything else is an error.
A conversation whose prompt leaves no room in the model's context is skipped and counted.
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch
from torch import nn

from lmstack.adapt.methods import load_adapted
from lmstack.data.conversations import Format, read_conversations
from lmstack.errors import LmstackError
from lmstack.generate.api import generate
from lmstack.text.chat import ChatFormat
from lmstack.text.tokenizer import Tokenizer


def exact_match(model: nn.Module, tokenizer: Tokenizer, conversations: list[dict], max_new_tokens: int = 96,
                batch_size: int = 16, n_examples: int = 3) -> dict:
    """Exact-match accuracy of the last assistant turn of each conversation, overall and per ``kind``."""
    chat, prompts, references, kept, questions = ChatFormat(tokenizer), [], [], [], []
    for c in conversations:
        last = max((i for i, m in enumerate(c["messages"]) if m["role"] == "assistant"), default=None)
        if last is None:
            raise LmstackError("a test conversation has no assistant turn to compare with")
        prompt = chat.encode(c["messages"][:last], c.get("tools"))
        if len(prompt) >= model.config.block_size:
            continue  # no room to answer: counted as skipped
        prompts.append(prompt)
        references.append((c["messages"][last].get("content") or "").strip())
        questions.append(c["messages"][last - 1].get("content", ""))
        kept.append(c)
    if not kept:
        raise LmstackError("every test conversation is longer than the model's "
                           f"{model.config.block_size}-token context")
    replies = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            replies += generate(model, tokenizer, prompts[start:start + batch_size], max_new_tokens=max_new_tokens,
                                stop_ids=chat.end_ids)
    hits = [r.strip() == ref for r, ref in zip(replies, references)]
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for c, hit in zip(kept, hits):
        by_kind[c.get("kind", "all")].append(hit)
    return {"exact_match": sum(hits) / len(hits), "n": len(hits), "skipped_too_long": len(conversations) - len(kept),
            "by_kind": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_kind.items())},
            "examples": [{"question": q, "reference": ref, "reply": r.strip()}
                         for q, r, ref in list(zip(questions, replies, references))[:n_examples]]}


def chat_eval(*, model: str, data: list[str], adapter: str | None = None, format: Format = "auto",
              limit: int | None = None, max_new_tokens: int = 96) -> dict:
    """Exact match of a model's (or model + adapter's) replies against test conversations.

    Args:
        model: base model directory
        data: test conversations (.json/.jsonl: alpaca, sharegpt or openai messages)
        adapter: adapter directory from `lmstack finetune` (LoRA, adapter, prefix, prompt)
        format: the data format, or auto
        limit: score only the first N conversations
        max_new_tokens: the longest reply generated
    """
    net, tokenizer = load_adapted(model, adapter)
    conversations = [c for path in data for c in read_conversations(path, format)]
    start = time.perf_counter()
    result = exact_match(net, tokenizer, conversations[:limit], max_new_tokens)
    return {**result, "seconds": round(time.perf_counter() - start, 2)}

