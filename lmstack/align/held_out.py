"""What a policy answers to held-out prompts, and how those answers are judged: greedy replies (batched, the
KV-cached decoder, stopped at the chat turn end) scored by a reward function or checked by a rule-based judge.

Used before and after DPO / PPO / GRPO: the mean held-out reward, and the fraction of prompts whose greedy answer
is of the preferred kind (correct, polite, in the asked language, on the synthetic world).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lmstack.generate.api import generate
from lmstack.text.chat import ChatFormat
from lmstack.text.tokenizer import Tokenizer


def greedy_replies(model: nn.Module, tokenizer: Tokenizer, prompts: list[list[dict]], max_new_tokens: int = 48,
                   batch_size: int = 16) -> list[str]:
    """The model's greedy reply to each prompt (a list of messages), stripped of surrounding whitespace."""
    chat, replies = ChatFormat(tokenizer), []
    ids = [chat.encode(p) for p in prompts]
    with torch.inference_mode():
        for lo in range(0, len(ids), batch_size):
            replies += generate(model, tokenizer, ids[lo:lo + batch_size], max_new_tokens=max_new_tokens,
                                stop_ids=chat.end_ids)
    return [r.strip() for r in replies]


def judge_replies(replies: list[str], metas: list[dict], judge: Callable[[dict, str], dict[str, bool]],
                  n_examples: int = 4) -> dict:
    """The fraction of replies passing each of the judge's checks (``chosen_kind``: all of them), and examples."""
    verdicts = [judge(meta, reply) for meta, reply in zip(metas, replies)]
    keys = list(verdicts[0]) if verdicts else []
    rates = {k: sum(v[k] for v in verdicts) / len(verdicts) for k in keys}
    examples = [{"reply": r, **v} for r, v in zip(replies, verdicts)][:n_examples]
    return {**rates, "n": len(verdicts), "examples": examples}
