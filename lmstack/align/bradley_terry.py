"""The reward-model objective: Bradley-Terry on pairwise comparisons (Bradley & Terry 1952; Ouyang et al. 2022,
eq. 1), with trl's optional margin and reward centering.

    P(y_c > y_r | x) = sigmoid(r(x, y_c) - r(x, y_r))
    L = -1/B sum_i log sigmoid(r_c,i - r_r,i - m_i)  +  c * 1/B sum_i (r_c,i + r_r,i)^2

``m_i`` is the pair's "margin" field where the record has one, else a constant (0: plain Bradley-Terry; Touvron
et al. 2023 use a margin from the rating gap); ``c`` is trl's ``center_rewards_coefficient`` (Eisenstein et al.
2023): it pulls rewards towards mean zero, which the pairwise term alone leaves undetermined. Logged per step:
accuracy (r_c > r_r), mean margin r_c - r_r, mean chosen and rejected reward. Batches draw pairs uniformly with
replacement from the trainer's generator (``align.data.draw``), so a resumed run draws what an uninterrupted one
would. A checkpoint is the reward model folder itself (Hugging Face format); so is the artefact (``out/model``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lmstack.align.data import draw
from lmstack.align.reward_model import (EncodedPair, PairText, TextPair, load_reward_model, save_reward_model,
                                        start_reward_model, write_reward_files)
from lmstack.errors import LmstackError
from lmstack.train.objective import Objective


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | float = 0.0,
                       center_coefficient: float = 0.0) -> torch.Tensor:
    """-mean log sigmoid(r_c - r_r - m) + c * mean((r_c + r_r)^2), for rewards [B] (see the module docstring)."""
    loss = -F.logsigmoid(chosen - rejected - margin).mean()
    if center_coefficient:
        loss = loss + center_coefficient * ((chosen + rejected) ** 2).mean()
    return loss


def pair_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, torch.Tensor]:
    """Accuracy (the share of pairs with r_c > r_r; ties count as wrong), mean margin, mean rewards."""
    return {"accuracy": (chosen > rejected).float().mean(), "margin": (chosen - rejected).mean(),
            "chosen_reward": chosen.mean(), "rejected_reward": rejected.mean()}


class BradleyTerry(Objective):
    """Train the reward model that starts from ``start`` (``reward_model.start_reward_model``) on ``train`` pairs,
    estimating on ``val``; ``text`` is the model's ``PairText`` (the one that encoded the pairs)."""

    eval_splits = ("train", "val")

    def __init__(self, start: Path, text: PairText, train: list[EncodedPair], val: list[EncodedPair],
                 batch_size: int, center_coefficient: float = 0.0):
        if not train:
            raise LmstackError("no preference pairs to train on")
        self.start, self.text, self.batch_size, self.center = Path(start), text, batch_size, center_coefficient
        self.data = {"train": train, "val": val or train}

    def batch(self, split: str, rng: torch.Generator) -> dict[str, torch.Tensor]:
        """``batch_size`` pairs: the model's inputs for the chosen rows then the rejected rows, and the margins."""
        pairs = [self.data[split][i] for i in draw(len(self.data[split]), self.batch_size, rng)]
        rows = [TextPair(p.prompt, p.chosen) for p in pairs] + [TextPair(p.prompt, p.rejected) for p in pairs]
        return {**self.text.inputs(rows), "margin": torch.tensor([p.margin for p in pairs], dtype=torch.float32)}

    def rewards(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(r_c, r_r), each [B] in fp32, differentiable."""
        rewards = model(**{k: v for k, v in batch.items() if k != "margin"}).squeeze(-1).float()
        return rewards.chunk(2)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        chosen, rejected = self.rewards(model, batch)
        loss = bradley_terry_loss(chosen, rejected, batch["margin"], self.center)
        return loss, {k: v.detach() for k, v in pair_metrics(chosen, rejected).items()}

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["attention_mask"].sum())

    def build(self, device: torch.device) -> nn.Module:
        return start_reward_model(self.start, device)[0]

    def write_state(self, model: nn.Module, folder: Path) -> None:
        write_reward_files(model, self.text.tokenizer, folder, self.text.max_len)

    def restore(self, folder: Path, device: torch.device) -> nn.Module:
        return load_reward_model(folder, device)[0]

    def save(self, model: nn.Module, out: Path) -> Path:
        return save_reward_model(model, self.text.tokenizer, out / "model", self.text.max_len)

    def title(self, model: nn.Module) -> str:
        return f"{self.text.kind} reward model · Bradley-Terry · {sum(p.numel() for p in model.parameters()):,} " \
               "parameters"
