"""What PPO and GRPO share: prompts -> sampled answers -> rewards -> a buffer of minibatches, drawn one per
Trainer step, so the one training loop (``lmstack.train.trainer.Trainer``) stays the only loop.

    batch(): buffer empty? -> draw ``rollout_prompts`` prompts (the trainer's generator), sample ``group`` answers
             to each (``align.rollout``, seeded from the same generator), score them (``reward``), and let the
             subclass turn the rollout into per-token tensors (``score``: old log-probs, advantages ...);
             the buffer then holds ``epochs`` shuffled passes of ``batch_size``-row minibatches
           -> the next minibatch (the rollout's figures ride along under "stats" and are logged with the step)

The objective keeps a handle on the model it built or restored (``prepare``) to sample with. The reference
model: with LoRA, the policy with its adapter switched off (``adapt.lora.adapters_disabled``: no extra memory);
with any other method (full fine-tuning, bottleneck adapters, prefix / prompt tuning) a frozen copy of the base
model, which costs one more copy of the base weights in memory. Exact resume: the buffer (tensors), the
rollout's figures and the subclass's controller state are the objective's ``state_dict``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import torch
from torch import nn

from lmstack.adapt.lora import LoRA, adapters_disabled
from lmstack.adapt.objective import AdaptedPolicy
from lmstack.align.data import draw, encode_prompts
from lmstack.align.rewards import RewardFn
from lmstack.align.rollout import Rollout, completion_logprobs, real_tokens, rows, sample
from lmstack.data.preferences import PromptRecord
from lmstack.errors import LmstackError
from lmstack.generate.config import GenerationConfig
from lmstack.model.moe import auxiliary_losses
from lmstack.text.chat import ChatFormat
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.distributed import gathered


class RolloutBuffer:
    """One rollout's per-row tensors, served as ``epochs`` shuffled passes of ``batch_size``-row minibatches."""

    def __init__(self):
        self.data: dict[str, torch.Tensor] = {}
        self.stats: dict[str, torch.Tensor] = {}
        self.order: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.order)

    def fill(self, data: dict[str, torch.Tensor], stats: dict[str, float], epochs: int, batch_size: int,
             rng: torch.Generator) -> None:
        n = len(data["ids"])
        self.data, self.stats = data, {k: torch.tensor(float(v)) for k, v in stats.items()}
        self.order = [index for _ in range(epochs) for index in torch.randperm(n, generator=rng).split(batch_size)]

    def next(self) -> dict:
        return {**rows(self.data, self.order.pop(0)), "stats": self.stats}

    def state_dict(self) -> dict:
        return {"data": self.data, "stats": self.stats, "order": self.order}

    def load_state_dict(self, state: dict) -> None:
        self.data, self.stats, self.order = state["data"], state["stats"], list(state["order"])


class OnPolicy(AdaptedPolicy):
    """The sampling side of PPO and GRPO (see the module docstring); a subclass defines ``score`` and ``loss``.

    ``records``: the prompts; ``reward``: ``(records, replies) -> rewards``; ``generation``: how answers are
    sampled (temperature, top_p, max_new_tokens); ``rollout_prompts`` prompts per rollout, ``group`` answers to
    each; ``epochs`` passes of ``batch_size``-row minibatches per rollout; ``max_len``: the context used (None: the
    model's); ``bf16``: score rollouts under bf16 autocast, as the trainer runs the loss (so the first ratio is 1).
    """

    eval_splits: tuple[str, ...] = ()  # a rollout's loss is no held-out estimate: the command evaluates rewards
    group = 1
    needs_reference = True

    def init_on_policy(self, base: Path, method, tokenizer: Tokenizer, records: list[PromptRecord],
                       reward: RewardFn, generation: GenerationConfig, rollout_prompts: int, epochs: int,
                       batch_size: int, max_len: int | None = None, bf16: bool = False) -> None:
        if not records:
            raise LmstackError("no prompts to sample answers to")
        if (rollout_prompts * self.group) % batch_size:
            raise LmstackError(f"a rollout of {rollout_prompts} prompt(s) x {self.group} answer(s) does not split "
                               f"into minibatches of batch_size {batch_size}; make it a multiple")
        self.init_policy(base, method)
        self.tokenizer, self.chat = tokenizer, ChatFormat(tokenizer)
        self.records, self.reward, self.generation = records, reward, generation
        self.rollout_prompts, self.epochs, self.batch_size, self.max_len, self.bf16 = \
            rollout_prompts, epochs, batch_size, max_len, bf16
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else (tokenizer.eos_id or 0)
        self.buffer = RolloutBuffer()
        self.model: nn.Module | None = None
        self.reference: nn.Module | None = None
        self.prompt_ids: list[list[int]] = []

    def policy(self, model: nn.Module) -> nn.Module:
        """The causal LM inside what the trainer trains (PPO adds a value head around it)."""
        return model

    def prepare(self, model: nn.Module) -> nn.Module:
        """Keep a handle on the model, encode the prompts for its context, and set up the reference."""
        lm = self.policy(model)
        block = self.max_len or lm.config.block_size
        if block > lm.config.block_size:
            raise LmstackError(f"max_len {block} exceeds the model's context of {lm.config.block_size} tokens")
        self.prompt_ids = encode_prompts(self.chat, self.records, block, self.generation.max_new_tokens)
        self.model, self.device = model, next(model.parameters()).device
        if self.needs_reference and not isinstance(self.method, LoRA) and self.reference is None:
            self.reference = self.load_base(self.device).requires_grad_(False).eval()
        return model

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def reference_logprobs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """log pi_ref of the completion tokens [B, N], without gradients."""
        lm = self.policy(self.model)
        reference = lm if self.reference is None else self.reference
        off = adapters_disabled(lm) if self.reference is None else contextlib.nullcontext()
        with torch.no_grad(), self.autocast(), off:
            return self.chunked(lambda b: completion_logprobs(reference, b)[0], batch)

    def chunked(self, fn, batch: dict[str, torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """``fn`` over ``batch_size``-row pieces of ``batch`` (on the model's device), joined on the CPU."""
        outs = []
        for index in torch.arange(len(batch["ids"])).split(self.batch_size):
            out = fn({k: v.to(self.device) for k, v in rows(batch, index).items()})
            outs.append(tuple(o.float().cpu() for o in out) if isinstance(out, tuple) else out.float().cpu())
        if isinstance(outs[0], tuple):
            return tuple(torch.cat(parts) for parts in zip(*outs))
        return torch.cat(outs)

    def with_router_losses(self, model: nn.Module, batch: dict[str, torch.Tensor], loss: torch.Tensor,
                           metrics: dict) -> tuple[torch.Tensor, dict]:
        """``loss`` plus, for a mixture-of-experts policy, its routers' training term of the forward just run,
        over the rollout's real tokens (``rollout.real_tokens``), as pretraining, SFT and DPO add it."""
        router, router_metrics = auxiliary_losses(model, real_tokens(batch))
        return (loss if router is None else loss + router), {**metrics, **router_metrics}

    def batch(self, split: str, rng: torch.Generator) -> dict:
        if not len(self.buffer):
            self.refill(rng)
        return self.buffer.next()

    def count(self, batch: dict) -> int:
        """Completion tokens in the minibatch."""
        return int(batch["mask"].sum())

    def refill(self, rng: torch.Generator) -> None:
        """Sample a rollout and fill the buffer with the subclass's per-token tensors for it."""
        picks = [i for i in draw(len(self.records), self.rollout_prompts, rng) for _ in range(self.group)]
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=rng))
        config = dataclasses.replace(self.generation, seed=seed)
        lm = self.policy(self.model)
        was_training = lm.training
        lm.eval()
        try:
            with gathered(self.model):  # FSDP2: whole parameters for the decoder's inference mode
                rollout = sample(lm, [self.prompt_ids[i] for i in picks], config, self.chat.end_ids, self.pad_id)
            records = [self.records[i] for i in picks]
            replies = [self.reply_text(c) for c in rollout.completions]
            rewards = torch.tensor(self.reward(records, replies), dtype=torch.float32)
            data, stats = self.score(rollout, rewards)
        finally:
            lm.train(was_training)
        self.buffer.fill(data, stats, self.epochs, self.batch_size, rng)

    def reply_text(self, completion: list[int]) -> str:
        return self.tokenizer.decode([t for t in completion if t not in self.chat.end_ids]).strip()

    def score(self, rollout: Rollout, rewards: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """The rollout's per-row training tensors (what ``loss`` reads) and its figures to log."""
        raise NotImplementedError

    @property
    def last_stats(self) -> dict[str, float]:
        """The figures of the latest rollout (reward, KL ...)."""
        return {k: float(v) for k, v in self.buffer.stats.items()}

    def state_dict(self) -> dict:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("buffer"):
            self.buffer.load_state_dict(state["buffer"])
