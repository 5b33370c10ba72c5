"""``lmstack merge``: fold a LoRA adapter into its base model and write a plain model directory.

W' = W + (alpha / r) B A for every adapted layer (Hu et al. 2021, section 4.1): the merged model runs at the
base model's speed, loads in ``transformers`` as any model does, and needs no adapter code at all.
"""

from __future__ import annotations

from pathlib import Path

from lmstack.adapt.lora import lora_layers, merge
from lmstack.adapt.methods import load_adapted
from lmstack.errors import LmstackError
from lmstack.model.hf import load_model, save_model


def merge_adapter(model: str, adapter: str, *, out: str) -> dict:
    """Merge a LoRA adapter into its base model and save the result in the native (Hugging Face) format.

    Args:
        model: base model directory
        adapter: LoRA adapter directory (from `lmstack finetune --method lora`, or peft)
        out: where to write the merged model directory
    """
    net, tokenizer = load_adapted(model, adapter, load=load_model)
    layers = len(lora_layers(net))
    if not layers:
        raise LmstackError(f"{adapter}: only LoRA adapters can be merged into the weights; bottleneck adapters, "
                           "prefixes and soft prompts add computation and stay separate")
    saved = save_model(merge(net), Path(out), tokenizer)
    return {"out": str(saved), "merged_layers": layers, "params": net.num_params()}
