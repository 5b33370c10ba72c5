"""Fine-tuning data: conversations rendered by the chat template, tokenised, with the loss on assistant tokens;
or prompt-completion records (trl's non-conversational form): prompt and completion encoded separately and joined,
as ``lmstack evaluate`` scores a continuation, the completion followed by eos and the loss on it alone.

Prompt masking: the targets of every token the assistant did not write (system, user and tool turns, the
turn headers) are -100, so the model learns to answer, not to imitate users. Batches group examples of
similar length (right-padded, the padding masked out of the loss), so no token attends across examples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmstack.errors import LmstackError
from lmstack.text.chat_template import assistant_spans
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.objectives.causal import IGNORE


@dataclass
class Example:
    ids: list[int]  # the rendered conversation's tokens
    labels: list[int]  # labels[j] = ids[j] where the assistant wrote token j, else IGNORE


def encode_conversation(tokenizer: Tokenizer, conversation: dict) -> Example:
    """Render ``conversation`` with the tokenizer's chat template and mark the assistant's tokens."""
    text, spans = assistant_spans(conversation["messages"], tokenizer.template(), conversation.get("tools"),
                                  **tokenizer.template_variables())
    ids, offsets = tokenizer.encode_with_offsets(text)
    labels = [i if any(s <= start < e for s, e in spans) else IGNORE for i, (start, _) in zip(ids, offsets)]
    return Example(ids, labels)


def encode_completion(tokenizer: Tokenizer, record: dict) -> Example:
    """``encode(prompt) + encode(completion) + [eos]``, the loss on the completion and eos."""
    prompt = tokenizer.encode(record["prompt"], specials=False)
    completion = tokenizer.encode(record["completion"], specials=False) + [tokenizer.eos_id]
    return Example(prompt + completion, [IGNORE] * len(prompt) + completion)


def encode_example(tokenizer: Tokenizer, record: dict) -> Example:
    """A conversation (chat template) or a prompt-completion record (plain text) as ids and labels."""
    return encode_conversation(tokenizer, record) if "messages" in record else encode_completion(tokenizer, record)


def encode_all(tokenizer: Tokenizer, conversations: list[dict], max_len: int) -> tuple[list[Example], dict]:
    """Encode every conversation; one longer than ``max_len`` + 1 tokens is cut to its first ``max_len`` + 1
    (the end of a long conversation is lost, as with LLaMA-Factory's cutoff_len) and dropped, and counted,
    when no assistant token is left."""
    examples, truncated, skipped = [], 0, 0
    for conversation in conversations:
        ex = encode_example(tokenizer, conversation)
        if len(ex.ids) > max_len + 1:
            ex, truncated = Example(ex.ids[: max_len + 1], ex.labels[: max_len + 1]), truncated + 1
        if all(label == IGNORE for label in ex.labels[1:]):
            skipped += 1
            continue
        examples.append(ex)
    if not examples:
        raise LmstackError(f"no usable conversations: all {skipped} lost their assistant turns to the "
                           f"{max_len}-token context")
    return examples, {"examples": len(examples), "truncated": truncated, "skipped": skipped}


class SFTBatches:
    """Length-grouped batches of examples, drawn from a ``torch.Generator`` (so a resumed run draws the same).

    Each batch picks an anchor in length order and draws its rows from the ``4 * batch_size`` examples around
    it: rows have similar lengths (little padding) yet meet different companions each time.
    """

    def __init__(self, examples: list[Example], pad_id: int):
        self.examples = sorted(examples, key=lambda ex: len(ex.ids))
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.examples)

    def batch(self, batch_size: int, block: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs [B, T] and targets [B, T] (the next token where the assistant wrote it, else -100)."""
        n = len(self.examples)
        width = min(n, 4 * batch_size)
        lo = int(torch.randint(0, n - width + 1, (1,), generator=rng))
        rows = [self.examples[lo + int(j)] for j in torch.randint(0, width, (batch_size,), generator=rng)]
        T = min(block, max(len(ex.ids) for ex in rows) - 1)
        x = torch.full((batch_size, T), self.pad_id, dtype=torch.long)
        y = torch.full((batch_size, T), IGNORE, dtype=torch.long)
        for r, ex in enumerate(rows):
            ids, labels = ex.ids[: T + 1], ex.labels[: T + 1]
            x[r, : len(ids) - 1] = torch.tensor(ids[:-1])
            y[r, : len(ids) - 1] = torch.tensor(labels[1:])
        return x, y
