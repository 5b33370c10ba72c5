"""The DPO family as one objective: ``loss_type`` picks the loss of ``align.losses`` (sigmoid = DPO / cDPO, robust,
ipo, hinge, simpo, orpo; kto for unpaired labels).

    step: draw B pairs -> one forward over the 2B rows [chosen; rejected] -> pi_c, pi_r (summed answer log-probs)
          -> loss(pi, ref, token counts) with ref read from the cache (align.reference) -> mean

The policy is the base with the adaptation method applied (``adapt.objective.AdaptedPolicy``). Before the
method is applied, the base itself computes the reference log-probabilities of every train and val row once
(no_grad; the reference of a PEFT method is the base, of full fine-tuning the starting model), so no second
model is ever resident; they are cached beside the run and reused on resume. KTO's reference point uses each
prompt with the previous example's answer (trl's mismatched pairs): the policy's side is one more no_grad forward.

Logged per step (metrics.jsonl): ``rewards/chosen``, ``rewards/rejected`` (the implicit rewards beta (pi - ref), or
beta pi / n without a reference), ``rewards/margins``, ``rewards/accuracy`` (chosen reward > rejected) and ``kl``:
the mean per-token log-ratio (pi_c - ref_c) / n_c on the chosen answers (KTO: its reference point z_ref).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lmstack.adapt.objective import AdaptedPolicy
from lmstack.align.data import LabelledExample, PairExample, draw, drop_long, encode_pairs, encode_unpaired
from lmstack.align.losses import LOSS_TYPES, PAIR_LOSSES, REFERENCE_FREE, LossParams, PairLogps, kto, kto_kl
from lmstack.align.reference import Provenance, Rows, cached_reference_logps
from lmstack.data.preferences import Preference, Unpaired
from lmstack.devices import use_bf16
from lmstack.errors import LmstackError
from lmstack.model.moe import auxiliary_losses
from lmstack.model.scoring import scored_tokens, sequence_logprobs
from lmstack.text.chat import ChatFormat
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.objective import Objective


@dataclass(frozen=True)
class Draw:
    """A batch: indices of examples of one split (passed to ``loss`` as it is)."""
    split: str
    idx: list[int]


class PreferenceObjective(AdaptedPolicy, Objective):
    """Tune ``base`` with ``method`` on preference ``records`` ({"train": [...], "val": [...]}: ``Preference``
    pairs, or ``Unpaired`` answers for ``loss_type="kto"``) with the loss ``loss_type`` under ``params``.

    ``max_len``: tokens per prompt + answer (None: the model's context less any virtual tokens);
    ``ref_cache``: the reference log-probs' file; ``precision``: the trainer's (the reference is computed under the
    same autocast); ``data_source``: the data's files, named when a cache is refused.
    """

    eval_splits = ("val",)

    def __init__(self, base: Path, method, tokenizer: Tokenizer, records: dict[str, list[Preference] | list[Unpaired]],
                 loss_type: str = "sigmoid", params: LossParams | None = None, batch_size: int = 8,
                 max_len: int | None = None, ref_cache: Path | None = None, precision: str = "auto",
                 ref_batch_size: int = 16, data_source: str = "", skip_long: bool = False):
        if loss_type not in LOSS_TYPES:
            raise LmstackError(f"loss_type {loss_type!r} is not one of {', '.join(LOSS_TYPES)}")
        if loss_type not in REFERENCE_FREE and ref_cache is None:
            raise LmstackError(f"loss_type {loss_type} needs reference log-probs: give ref_cache a path")
        self.init_policy(base, method)
        self.tokenizer, self.chat, self.records = tokenizer, ChatFormat(tokenizer), records
        self.loss_type, self.params = loss_type, params or LossParams()
        self.batch_size, self.max_len, self.ref_cache, self.precision = batch_size, max_len, ref_cache, precision
        self.ref_batch_size, self.data_source, self.skip_long = ref_batch_size, data_source, skip_long
        self.unpaired, self.with_reference = loss_type == "kto", loss_type not in REFERENCE_FREE
        self.stage = f"{loss_type} preference tuning"
        self.examples: dict[str, list] = {}
        self.kl_answers: dict[str, list[list[int]]] = {}  # KTO: each prompt's mismatched answer
        self.ref: dict[str, torch.Tensor] = {}
        self.data_stats: dict = {}

    # the model side: the reference is computed from the base before the method is applied

    def build(self, device: torch.device) -> nn.Module:
        base = self.load_base(device)
        self.prepare_data(base, device)
        return self.method.apply(base, self.tokenizer)

    def restore(self, folder: Path, device: torch.device) -> nn.Module:
        if not self.peft and not self.examples:  # full fine-tuning: the starting model scores, then is freed
            self.prepare_data(self.load_base(device), device)
        return super().restore(folder, device)  # PEFT: build (the base, then the method) + the trained part

    def prepare_data(self, base: nn.Module, device: torch.device) -> None:
        """Encode both splits to fit the policy's context, and read or compute their reference log-probs."""
        if self.examples:
            return
        context = base.config.block_size - getattr(self.method, "n_virtual", 0)  # prefix / prompt spend positions
        block = self.max_len or context
        if block > context:
            raise LmstackError(f"max_len {block} exceeds the policy's context of {context} tokens")
        encode = encode_unpaired if self.unpaired else encode_pairs
        for split, records in self.records.items():
            if self.skip_long:
                records, self.data_stats[f"{split}_too_long"] = drop_long(self.chat, records, block)
            self.examples[split], stats = encode(self.chat, records, block)
            self.data_stats.update({f"{split}_{k}": v for k, v in stats.items()})
        if self.unpaired:
            self.kl_answers = {s: _mismatched(ex, block) for s, ex in self.examples.items()}
        if not self.with_reference:
            return
        bf16 = use_bf16(self.precision, device)
        autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)  # noqa: E731
        self.ref, reused = cached_reference_logps(
            self.ref_cache, self._rows(), base, Provenance(self.data_source, str(self.base)), self.ref_batch_size,
            autocast)
        self.data_stats["reference"] = "cached" if reused else "computed"

    def _rows(self) -> Rows:
        rows: Rows = {}
        for split, ex in self.examples.items():
            prompts = [e.prompt for e in ex]
            if self.unpaired:
                rows[f"{split}.completion"] = prompts, [e.completion for e in ex]
                rows[f"{split}.kl"] = prompts, self.kl_answers[split]
            else:
                rows[f"{split}.chosen"] = prompts, [e.chosen for e in ex]
                rows[f"{split}.rejected"] = prompts, [e.rejected for e in ex]
        return rows

    # the data and the loss

    def batch(self, split: str, rng: torch.Generator) -> Draw:
        return Draw(split, draw(len(self.examples[split]), self.batch_size, rng))

    def count(self, batch: Draw) -> int:
        ex = [self.examples[batch.split][i] for i in batch.idx]
        if self.unpaired:
            return sum(len(e.prompt) + len(e.completion) for e in ex)
        return sum(2 * len(e.prompt) + len(e.chosen) + len(e.rejected) for e in ex)

    def loss(self, model: nn.Module, batch: Draw) -> tuple[torch.Tensor, dict]:
        return self._unpaired_loss(model, batch) if self.unpaired else self._pair_loss(model, batch)

    def _pair_loss(self, model: nn.Module, batch: Draw) -> tuple[torch.Tensor, dict]:
        ex: list[PairExample] = [self.examples[batch.split][i] for i in batch.idx]
        prompts = [e.prompt for e in ex]
        answers = [e.chosen for e in ex] + [e.rejected for e in ex]
        logps = sequence_logprobs(model, prompts + prompts, answers, batch_size=2 * len(ex))  # one forward
        router, router_metrics = auxiliary_losses(model, scored_tokens(prompts + prompts, answers))  # MoE only
        chosen, rejected = logps.chunk(2)
        n_c, n_r = (torch.tensor([float(len(getattr(e, k))) for e in ex], device=logps.device)
                    for k in ("chosen", "rejected"))
        ref_c, ref_r = (self._ref(batch, k, logps.device) for k in ("chosen", "rejected"))
        out = PAIR_LOSSES[self.loss_type](PairLogps(chosen, rejected, ref_c, ref_r, n_c, n_r), self.params)
        metrics = {"rewards/chosen": out.chosen_rewards.mean(), "rewards/rejected": out.rejected_rewards.mean(),
                   "rewards/margins": (out.chosen_rewards - out.rejected_rewards).mean(),
                   "rewards/accuracy": (out.chosen_rewards > out.rejected_rewards).float().mean()}
        if ref_c is not None:
            metrics["kl"] = ((chosen.detach() - ref_c) / n_c).mean()
        loss = out.losses.mean()
        if self.params.rpo_alpha:  # RPO: + alpha * NLL per token of the chosen answer
            nll = (-chosen / n_c).mean()
            loss, metrics["nll"] = loss + self.params.rpo_alpha * nll, nll.detach()
        return (loss if router is None else loss + router), {**metrics, **router_metrics}

    def _unpaired_loss(self, model: nn.Module, batch: Draw) -> tuple[torch.Tensor, dict]:
        ex: list[LabelledExample] = [self.examples[batch.split][i] for i in batch.idx]
        prompts = [e.prompt for e in ex]
        policy = sequence_logprobs(model, prompts, [e.completion for e in ex], batch_size=len(ex))
        router, router_metrics = auxiliary_losses(model, scored_tokens(prompts, [e.completion for e in ex]))
        with torch.no_grad():
            policy_kl = sequence_logprobs(model, prompts, [self.kl_answers[batch.split][i] for i in batch.idx],
                                          batch_size=len(ex))
        z_ref = kto_kl(policy_kl, self._ref(batch, "kl", policy.device))
        desirable = torch.tensor([e.label for e in ex], device=policy.device)
        losses, rewards = kto(policy, self._ref(batch, "completion", policy.device), desirable, z_ref, self.params)
        metrics = {"kl": z_ref}
        if desirable.any():
            metrics["rewards/chosen"] = rewards[desirable].mean()
        if not desirable.all():
            metrics["rewards/rejected"] = rewards[~desirable].mean()
        if len(metrics) == 3:
            metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
        loss = losses.mean()
        return (loss if router is None else loss + router), {**metrics, **router_metrics}

    def _ref(self, batch: Draw, part: str, device: torch.device) -> torch.Tensor | None:
        if not self.with_reference:
            return None
        return self.ref[f"{batch.split}.{part}"][batch.idx].to(device)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str = "val") -> dict[str, float]:
        """The loss and metrics over every example of ``split`` (in order, batch by batch) as ``{split}/loss``,
        ``{split}/accuracy``, ``{split}/margins``, ``{split}/chosen``, ``{split}/rejected``, ``{split}/kl``."""
        training = model.training
        model.eval()
        n, totals, counts = len(self.examples[split]), {}, {}
        bf16 = use_bf16(self.precision, _device(model))
        with torch.autocast(_device(model).type, dtype=torch.bfloat16, enabled=bf16):
            for lo in range(0, n, self.batch_size):
                idx = list(range(lo, min(n, lo + self.batch_size)))
                loss, metrics = self.loss(model, Draw(split, idx))
                for k, v in {"loss": loss, **metrics}.items():
                    totals[k] = totals.get(k, 0.0) + float(v) * len(idx)
                    counts[k] = counts.get(k, 0) + len(idx)
        model.train(training)
        return {f"{split}/{k.removeprefix('rewards/')}": v / counts[k] for k, v in totals.items()}


def _mismatched(examples: list[LabelledExample], block: int) -> list[list[int]]:
    """KTO's KL rows (trl's): prompt i with example i-1's answer, cut to fit the context after prompt i."""
    n = len(examples)
    return [examples[(i - 1) % n].completion[:block - len(e.prompt)] for i, e in enumerate(examples)]


def _device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")

