"""Prefix tuning (Li & Liang 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation", arXiv:2101.00190).

Every layer gets P trained key/value vectors that the real tokens attend to, as if a prefix of P tokens had
been read; the model itself stays frozen. Optimising the prefixes directly is unstable, so during training
they are produced by a reparameterisation, an MLP over P embeddings (``reparam_hidden`` wide); the saved
adapter holds only the resulting plain prefixes, laid out as peft's ``prompt_embeddings`` ([P, layers x 2 x
kv heads x head_dim], keys then values per layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lmstack.adapt.virtual import VirtualTokens
from lmstack.errors import LmstackError
from lmstack.model.blocks import KVCache


class PrefixTuned(VirtualTokens):
    def __init__(self, base: nn.Module, n_virtual: int, reparam_hidden: int):
        super().__init__(base, n_virtual)
        c = base.config
        width = c.n_layer * 2 * c.n_kv_head * c.head_dim
        if reparam_hidden:
            self.embedding = nn.Parameter(torch.randn(n_virtual, c.n_embd) * 0.02)
            self.mlp = nn.Sequential(nn.Linear(c.n_embd, reparam_hidden), nn.Tanh(), nn.Linear(reparam_hidden, width))
        else:
            self.prefix = nn.Parameter(torch.randn(n_virtual, width) * 0.02)

    def table(self) -> torch.Tensor:
        """The prefixes, [P, layers * 2 * kv heads * head_dim]."""
        return self.mlp(self.embedding) if hasattr(self, "mlp") else self.prefix

    def fill(self, cache: KVCache, batch_size: int) -> None:
        c, P = self.base.config, self.n_virtual
        kv = self.table().view(P, c.n_layer, 2, c.n_kv_head, c.head_dim).permute(1, 2, 3, 0, 4)  # [L, 2, H, P, D]
        dtype = self.base.tok_emb.weight.dtype
        for layer in range(c.n_layer):
            k, v = (kv[layer, i].unsqueeze(0).expand(batch_size, -1, -1, -1).to(dtype) for i in (0, 1))
            cache.update(layer, k, v)
        cache.advance(P)


@dataclass
class Prefix:
    """Prefix-tuning settings: ``n_virtual`` prefix positions; ``reparam_hidden`` the width of the training-time
    MLP (0: optimise the prefixes directly)."""
    n_virtual: int = 16
    reparam_hidden: int = 256

    peft_type = "PREFIX_TUNING"

    def __post_init__(self) -> None:
        if self.n_virtual <= 0 or self.reparam_hidden < 0:
            raise LmstackError(f"prefix: need n_virtual > 0 and reparam_hidden >= 0, got {self.n_virtual}, "
                               f"{self.reparam_hidden}")

    def apply(self, model: nn.Module, tokenizer=None) -> PrefixTuned:
        model.requires_grad_(False)
        if self.n_virtual >= model.config.block_size:
            raise LmstackError(f"prefix.n_virtual {self.n_virtual} leaves no room in a "
                               f"{model.config.block_size}-token context")
        return PrefixTuned(model, self.n_virtual, self.reparam_hidden).to(model.tok_emb.weight.device)

    def tensors(self, model: PrefixTuned) -> dict[str, torch.Tensor]:
        return {"prompt_embeddings": model.table().detach()}

    def load_tensors(self, model: PrefixTuned, tensors: dict[str, torch.Tensor], source: str) -> None:
        saved = tensors.get("prompt_embeddings")
        if saved is None or saved.shape != model.table().shape:
            raise LmstackError(f"{source}: 'prompt_embeddings' is missing or of another shape")
        with torch.no_grad():
            model.table().copy_(saved)

    def peft_config(self, model: PrefixTuned) -> dict:
        c = model.base.config
        return {"peft_type": self.peft_type, "task_type": "CAUSAL_LM", "num_virtual_tokens": self.n_virtual,
                "token_dim": c.n_embd, "num_layers": c.n_layer, "num_attention_heads": c.n_kv_head,
                "num_transformer_submodules": 1, "prefix_projection": False, "encoder_hidden_size": c.n_embd}

    @classmethod
    def from_peft_config(cls, config: dict) -> Prefix:
        return cls(n_virtual=config["num_virtual_tokens"], reparam_hidden=0)  # saved plain
