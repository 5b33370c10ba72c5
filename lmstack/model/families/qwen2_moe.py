"""Qwen2-MoE (Qwen team 2024): the Llama body with q/k/v biases and, in every block, routed experts plus one
shared expert on every token behind a sigmoid gate (``model.moe``); top-k weights not renormalised by default.

Reads and writes Hugging Face's ``Qwen2MoeForCausalLM``: ``mlp.gate`` (router), ``mlp.experts.e.gate_proj /
up_proj / down_proj``, ``mlp.shared_expert.{gate,up,down}_proj``, ``mlp.shared_expert_gate``. Only every layer
sparse is supported: ``decoder_sparse_step`` other than 1 or a non-empty ``mlp_only_layers`` is refused.
"""

from __future__ import annotations

from torch import nn

from lmstack.errors import LmstackError
from lmstack.model.config import ModelConfig
from lmstack.model.families import llama, mixtral
from lmstack.model.registry import Family, Rule, register


def rules(model: nn.Module) -> list[Rule]:
    c = model.config
    out = mixtral.body_rules(model) + mixtral.expert_rules(
        model, "mlp", lambda e: (f"experts.{e}.gate_proj.weight", f"experts.{e}.up_proj.weight",
                                 f"experts.{e}.down_proj.weight"))
    shared = (c.shared_expert_intermediate_size,) * 2
    for i in range(c.n_layer):
        p, h = f"blocks.{i}.mlp.", f"model.layers.{i}.mlp."
        out += [Rule(p + "shared.gate_up.weight", (h + "shared_expert.gate_proj.weight",
                                                   h + "shared_expert.up_proj.weight"), sizes=shared),
                Rule(p + "shared.proj.weight", (h + "shared_expert.down_proj.weight",)),
                Rule(p + "shared_gate.weight", (h + "shared_expert_gate.weight",))]
    return out


def check(c: ModelConfig) -> None:
    """What ``Qwen2MoeForCausalLM`` can hold, checked when the model is built (before anything is written)."""
    if c.bias or c.n_shared_experts != 1:
        raise LmstackError("a qwen2_moe model has exactly one shared expert (model.n_shared_experts 1) and biases "
                           "on q/k/v only (model.bias false)")


def build(c: ModelConfig) -> nn.Module:
    check(c)
    return mixtral.sparse_llama(c)


def to_hf_config(model: nn.Module) -> dict:
    c = model.config
    check(c)
    return {"architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe", **llama.body_hf_config(c),
            "intermediate_size": c.intermediate_size, "qkv_bias": c.qkv_bias,
            "num_experts": c.n_experts, "num_experts_per_tok": c.n_experts_per_tok,
            "moe_intermediate_size": c.moe_intermediate_size,
            "shared_expert_intermediate_size": c.shared_expert_intermediate_size,
            "norm_topk_prob": c.norm_topk_prob, "decoder_sparse_step": 1, "mlp_only_layers": [],
            "router_aux_loss_coef": c.router_aux_coef, "output_router_logits": False,
            "use_sliding_window": False}


def from_hf_config(hf: dict, source: str) -> ModelConfig:
    rope = mixtral.check_attention(hf, source)
    if hf.get("decoder_sparse_step", 1) != 1 or hf.get("mlp_only_layers"):
        raise LmstackError(f"{source}: decoder_sparse_step {hf.get('decoder_sparse_step', 1)} / mlp_only_layers "
                           f"{hf.get('mlp_only_layers')} are not supported (only every layer sparse: 1 / [])")
    return ModelConfig(family="qwen2_moe", **mixtral.body_config(hf, source, rope),
                       qkv_bias=bool(hf.get("qkv_bias", True)), intermediate_size=hf["intermediate_size"],
                       n_experts=hf["num_experts"], n_experts_per_tok=hf["num_experts_per_tok"],
                       moe_intermediate_size=hf["moe_intermediate_size"], n_shared_experts=1,
                       shared_expert_intermediate_size=hf["shared_expert_intermediate_size"],
                       norm_topk_prob=bool(hf.get("norm_topk_prob", False)))


QWEN2_MOE = register(Family(
    name="qwen2_moe", build=build, hf_model_types=("qwen2_moe",), hf_architectures=("Qwen2MoeForCausalLM",),
    to_hf_config=to_hf_config, from_hf_config=from_hf_config, rules=rules,
    linear_slices=lambda model: mixtral.attention_slices(model, rules(model)),
    intermediate_size=llama.intermediate_size, checkpoint_names=llama.checkpoint_names,
    materialise=mixtral.materialise))
