"""Prompt tuning (Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning", arXiv:2104.08691).

P trained embeddings, a soft prompt, are read before every input; nothing else is trained. They start as
the embeddings of a text (``init_text``, repeated or cut to P tokens) or of random vocabulary tokens, which
Lester et al. found far better than random vectors. Saved as peft's ``prompt_embeddings`` [P, n_embd].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lmstack.adapt.virtual import VirtualTokens
from lmstack.errors import LmstackError
from lmstack.model.blocks import KVCache


class PromptTuned(VirtualTokens):
    def __init__(self, base: nn.Module, init_ids: torch.Tensor):
        super().__init__(base, len(init_ids))
        self.prompt = nn.Parameter(base.tok_emb.weight[init_ids].detach().clone().float())

    def fill(self, cache: KVCache, batch_size: int) -> None:
        x = self.prompt.to(self.base.tok_emb.weight.dtype).unsqueeze(0).expand(batch_size, -1, -1)
        self.base.hidden_states(x, cache)


@dataclass
class Prompt:
    """Prompt-tuning settings: ``n_virtual`` soft-prompt vectors, initialised from ``init_text`` if given,
    else from random vocabulary embeddings."""
    n_virtual: int = 16
    init_text: str | None = None

    peft_type = "PROMPT_TUNING"

    def __post_init__(self) -> None:
        if self.n_virtual <= 0:
            raise LmstackError(f"prompt.n_virtual must be positive, got {self.n_virtual}")

    def apply(self, model: nn.Module, tokenizer=None) -> PromptTuned:
        model.requires_grad_(False)
        if self.n_virtual >= model.config.block_size:
            raise LmstackError(f"prompt.n_virtual {self.n_virtual} leaves no room in a "
                               f"{model.config.block_size}-token context")
        if self.init_text:
            if tokenizer is None:
                raise LmstackError("prompt.init_text needs the tokenizer")
            ids = tokenizer.encode(self.init_text) or [tokenizer.eos_id]
            init = torch.tensor((ids * self.n_virtual)[: self.n_virtual])
        else:
            init = torch.randint(0, model.config.vocab_size, (self.n_virtual,))
        return PromptTuned(model, init.to(model.tok_emb.weight.device))

    def tensors(self, model: PromptTuned) -> dict[str, torch.Tensor]:
        return {"prompt_embeddings": model.prompt.detach()}

    def load_tensors(self, model: PromptTuned, tensors: dict[str, torch.Tensor], source: str) -> None:
        saved = tensors.get("prompt_embeddings")
        if saved is None or saved.shape != model.prompt.shape:
            raise LmstackError(f"{source}: 'prompt_embeddings' is missing or of another shape")
        with torch.no_grad():
            model.prompt.copy_(saved)

    def peft_config(self, model: PromptTuned) -> dict:
        c = model.base.config
        return {"peft_type": self.peft_type, "task_type": "CAUSAL_LM", "num_virtual_tokens": self.n_virtual,
                "token_dim": c.n_embd, "num_layers": c.n_layer, "num_attention_heads": c.n_head,
                "num_transformer_submodules": 1, "prompt_tuning_init": "TEXT" if self.init_text else "RANDOM",
                "prompt_tuning_init_text": self.init_text}

    @classmethod
    def from_peft_config(cls, config: dict) -> Prompt:
        return cls(n_virtual=config["num_virtual_tokens"])
