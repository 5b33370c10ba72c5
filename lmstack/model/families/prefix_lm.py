"""Prefix LM (Raffel et al. 2020, sec. 3.2.1; Dong et al. 2019 UniLM; Tay et al. 2022 U-PaLM / UL2): a Llama-shaped
decoder whose attention is bidirectional over a prefix and causal after it.

    logits = model(idx [B, T], prefix_len=p [B])   # position t sees keys s <= t, and every s < p_b

Decoding reads the prompt as the bidirectional prefix (``PrefixSource.prefill``) and generates causally, so greedy
decoding equals the argmax of a full forward with ``prefix_len`` = the prompt's length. Hugging Face has no such
class: the directory is lmstack's format (Llama tensor names) with ``model_type`` ``lmstack_prefix_lm``, which
``transformers`` refuses instead of loading it as a causal model that would read prompts wrongly; a README.txt
beside the weights says so. lmstack loads it (and anything else of ours) by its ``lmstack`` block.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lmstack.errors import LmstackError
from lmstack.model.blocks import KVCache
from lmstack.model.config import ModelConfig
from lmstack.model.families import llama
from lmstack.model.registry import Family, register, save_decoder_tokenizer
from lmstack.model.source import ModelSource
from lmstack.model.transformer import Transformer, materialise

MODEL_TYPE, ARCHITECTURE = "lmstack_prefix_lm", "LmstackPrefixLM"
NOTE = ("lmstack prefix LM: a Llama-shaped decoder trained with attention bidirectional over a prefix (the prompt) "
        "and causal after it. transformers has no class for it; LlamaForCausalLM would read prompts causally and "
        "give other outputs, so model_type is not 'llama'. Load it with lmstack (lmstack.model.hf.load_model).")


class PrefixLM(Transformer):
    """The decoder ``Transformer`` whose own logit source reads prompts bidirectionally (``to_source``)."""

    bidirectional_prefix = True  # what the prefix-LM objective checks it is given

    def hidden_states(self, x: torch.Tensor, cache: KVCache | None = None, positions: torch.Tensor | None = None,
                      key_mask: torch.Tensor | None = None, prefix_len: torch.Tensor | None = None) -> torch.Tensor:
        if prefix_len is not None and int(prefix_len.max()) > self.config.block_size:
            raise LmstackError(f"a prefix of {int(prefix_len.max())} tokens exceeds the context of "
                               f"{self.config.block_size}")
        return super().hidden_states(x, cache, positions, key_mask, prefix_len)

    def source(self, compile: bool = False) -> PrefixSource:
        return PrefixSource(self, compile)

    def continuation_logits(self, contexts: list[list[int]], continuations: list[list[int]]) -> list[torch.Tensor]:
        """Per row, the logits [len(c), V] predicting each continuation token c_j from the context read as the
        bidirectional prefix (as decoding reads a prompt) and c_<j causally: what ``model.scoring`` and the
        evaluation harness read for log p(continuation | context). A context is cut from the left to fit the
        context window; rows are right-padded, which no real position can see."""
        device, block = self.tok_emb.weight.device, self.config.block_size
        rows, prefixes = [], []
        for context, continuation in zip(contexts, continuations):
            if not continuation or len(continuation) > block:
                raise LmstackError(f"a continuation of {len(continuation)} tokens: expected 1 to {block}")
            context = context[max(0, len(context) + len(continuation) - 1 - block):]
            if not context:
                raise LmstackError("a prefix LM scores a continuation given a context of at least one token")
            rows.append(context + continuation[:-1])
            prefixes.append(len(context))
        idx = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
        for r, ids in enumerate(rows):
            idx[r, :len(ids)] = torch.tensor(ids)
        logits = self(idx.to(device), prefix_len=torch.tensor(prefixes, device=device))  # [B, T, V]
        return [logits[r, p - 1:p - 1 + len(c)] for r, (p, c) in enumerate(zip(prefixes, continuations))]


class PrefixSource(ModelSource):
    """``ModelSource`` whose prefill attends bidirectionally over everything read so far (the prompt)."""

    def prefill(self, idx: torch.Tensor, cache: KVCache, positions: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        prefix = torch.full((idx.size(0),), cache.pos + idx.size(1), device=idx.device)  # [B]: the whole prompt
        return self.model(idx, cache, positions, key_mask, last_only=True, prefix_len=prefix)[:, -1]


def build(c: ModelConfig) -> PrefixLM:
    body = llama.build(c)
    model = PrefixLM.__new__(PrefixLM)
    model.__dict__ = body.__dict__  # the same modules and parameters, under the prefix-LM class
    return model


def to_hf_config(model: nn.Module) -> dict:
    return {**llama.to_hf_config(model), "architectures": [ARCHITECTURE], "model_type": MODEL_TYPE,
            "lmstack_note": NOTE}


def from_hf_config(hf: dict, source: str) -> ModelConfig:
    return llama.from_hf_config(hf, source).replace(family="prefix_lm")


def save_tokenizer(tokenizer, folder: Path) -> dict:
    """The decoder's tokenizer files, and README.txt saying what the directory holds."""
    (folder / "README.txt").write_text(NOTE + "\n", encoding="utf-8")
    return save_decoder_tokenizer(tokenizer, folder)


PREFIX_LM = register(Family(
    name="prefix_lm", build=build, hf_model_types=(MODEL_TYPE,), hf_architectures=(ARCHITECTURE,),
    to_hf_config=to_hf_config, from_hf_config=from_hf_config, rules=llama.rules, linear_slices=llama.linear_slices,
    intermediate_size=llama.intermediate_size, checkpoint_names=llama.checkpoint_names, materialise=materialise,
    save_tokenizer=save_tokenizer))
