"""Steering a decoder from the command line: DExperts, contrastive decoding and control codes, each built from
directories into what ``generate`` decodes (a logit source, or the prompt's ids).

* DExperts (Liu et al. 2021, arXiv:2105.03023, eq. 1): z = z_base + alpha (z_expert - z_anti), over the base
  model's nucleus: tokens outside the top-p set of softmax(z_base) get probability 0 (the paper's "top-p
  filtered" base), then the mixture is sampled as it is. alpha = 0 is the base model; alpha < 0 steers the other
  way. Either expert may be left out (expert-only: z_base + alpha z_expert; anti-only: z_base - alpha z_anti).
* Contrastive decoding (Li et al. 2022, arXiv:2210.15097): log p_model - log p_amateur over
  V_head = {x : p_model(x) >= plausibility * max_w p_model(w)}.
* Control codes (Keskar et al. 2019): the tag ``adapt.control_codes`` trained in front of every text, in front of
  the prompt's ids.

An expert, anti-expert or amateur is a model directory with the same tokenizer (compared by its sha256, as
``--draft`` is), or an adapter directory (LoRA, ...) applied to the base model. The sources themselves are
``combine.dexperts`` and ``combine.contrastive``; every member keeps its own KV cache.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from lmstack.adapt.control_codes import control_ids, control_prefix, read_control_codes
from lmstack.errors import LmstackError
from lmstack.generate.combine import contrastive, dexperts, finite
from lmstack.generate.config import GenerationConfig
from lmstack.generate.loading import DecodingDtype, load_companion, load_for_decoding
from lmstack.model.source import LogitSource
from lmstack.text.tokenizer import Tokenizer

ADAPTER_FILE = "adapter_config.json"


def load_member(directory: str | Path, base_dir: str | Path, tokenizer: Tokenizer, flag: str,
                device: str | torch.device = "cpu", dtype: DecodingDtype = "auto") -> nn.Module:
    """A steering member: a model directory on ``tokenizer`` (refused otherwise), or an adapter directory
    applied to the base model ``base_dir``."""
    path = Path(directory)
    if not path.is_dir():
        raise LmstackError(f"{flag} {path}: directory not found")
    if (path / ADAPTER_FILE).is_file():
        model, _ = load_for_decoding(base_dir, path, device, dtype)
        return model
    return load_companion(path, tokenizer, flag, device, dtype)


def steer(base: nn.Module | LogitSource, tokenizer: Tokenizer, base_dir: str | Path, config: GenerationConfig,
          expert: str | Path | None = None, anti_expert: str | Path | None = None, alpha: float = 1.0,
          amateur: str | Path | None = None, plausibility: float = 0.1, device: str | torch.device = "cpu",
          dtype: DecodingDtype = "auto") -> tuple[nn.Module | LogitSource, GenerationConfig]:
    """What to decode and how: ``base`` as it is when no steering is asked; DExperts with the expert and / or
    anti-expert directories (the sampler's top_p moves to the base's nucleus, so the mixture is not cut
    twice); or contrastive decoding against the amateur directory."""
    alpha, plausibility = finite(alpha, "--alpha"), finite(plausibility, "--plausibility")
    if amateur is not None and (expert is not None or anti_expert is not None):
        raise LmstackError("choose one steering method: --expert / --anti-expert (DExperts) or --amateur "
                           "(contrastive decoding)")
    if amateur is not None:
        if not 0 < plausibility <= 1:
            raise LmstackError(f"--plausibility must be in (0, 1], got {plausibility}")
        return contrastive(base, load_member(amateur, base_dir, tokenizer, "--amateur", device, dtype),
                           plausibility), config
    if expert is None and anti_expert is None:
        return base, config
    members = {flag: None if d is None else load_member(d, base_dir, tokenizer, flag, device, dtype)
               for flag, d in (("--expert", expert), ("--anti-expert", anti_expert))}
    source = dexperts(base, members["--expert"], members["--anti-expert"], alpha,
                      config.top_p if config.do_sample else 1.0)
    return source, dataclasses.replace(config, top_p=1.0) if config.do_sample else config


def controlled(tokenizer: Tokenizer, prompts: list[str] | list[list[int]], control: str,
               directories: list[str | Path | None]) -> list[list[int]]:
    """Each prompt's ids behind the control code's tag (``--control attribute=label``), read from the first of
    ``directories`` with control_codes.json; an unknown code is refused listing the known ones."""
    codes = read_control_codes(*directories)
    where = next((str(d) for d in directories if d is not None), "the model")
    tag = control_prefix(codes, control, where)
    return [control_ids(tokenizer, tag, p) for p in prompts]
