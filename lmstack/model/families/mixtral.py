"""Mixtral (Jiang et al. 2024): the Llama body with a mixture-of-experts MLP in every block (``model.moe``).

Reads and writes Hugging Face's ``MixtralForCausalLM``: the router is ``block_sparse_moe.gate``, expert e's
SwiGLU ``block_sparse_moe.experts.e.w1`` (gate) / ``w3`` (up) / ``w2`` (down), as the checkpoints on the Hub and
``save_pretrained`` of transformers 5 store them (transformers fuses them into ``mlp.experts.gate_up_proj`` in
memory only). Our stacked ``experts.gate_up`` is [w1_0; w3_0; w1_1; w3_1; ...], ``experts.proj`` [w2_0; w2_1; ...].
Mixtral always renormalises its top-k weights, has no shared expert and no biases. The builder and the expert
tensor rules are shared with ``qwen2_moe``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from lmstack.errors import LmstackError
from lmstack.model.blocks import Attention, Block, RMSNorm, RotaryEmbedding
from lmstack.model.config import ModelConfig
from lmstack.model.families import llama
from lmstack.model.families.hf_common import activation
from lmstack.model.moe import MoE, SparseTransformer, moe_layers
from lmstack.model.registry import Family, LinearSlice, Rule, block_linears, register
from lmstack.model.transformer import materialise as materialise_dense


def build(c: ModelConfig) -> SparseTransformer:
    check(c)
    return sparse_llama(c)


def check(c: ModelConfig) -> None:
    """What ``MixtralForCausalLM`` can hold, checked when the model is built (before anything is written)."""
    if c.bias or c.qkv_bias or c.n_shared_experts or not c.norm_topk_prob:
        raise LmstackError("a mixtral model has no biases (model.bias false), no shared expert and renormalised "
                           "top-k weights (model.norm_topk_prob true); use family qwen2_moe for the others")


def sparse_llama(c: ModelConfig) -> SparseTransformer:
    """N x Block(Attention, MoE, RMSNorm, RMSNorm) between the embedding and the final norm."""
    if c.n_experts <= 0:
        raise LmstackError(f"model.family '{c.family}' needs model.n_experts >= 1, got {c.n_experts}")

    def block() -> Block:
        return Block(Attention(c, rope=True), MoE(c), RMSNorm(c.n_embd, c.norm_eps), RMSNorm(c.n_embd, c.norm_eps),
                     c.dropout)
    return SparseTransformer(c, [block() for _ in range(c.n_layer)], RMSNorm(c.n_embd, c.norm_eps),
                             pos_emb=None, rope=RotaryEmbedding(c.head_dim, c.block_size, c.rope_theta))


def materialise(model: nn.Module) -> nn.Module:
    """``transformer.materialise``, and the per-expert load counters (not saved) rebuilt off "meta"."""
    model = materialise_dense(model)
    for m in moe_layers(model):
        m.load = m.load.new_zeros(m.load.shape, device=model.tok_emb.weight.device)
    return model


def body_rules(model: nn.Module) -> list[Rule]:
    """Llama's embedding, attention, norm and head rules (its dense-MLP rules dropped)."""
    return [r for r in llama.rules(model) if ".mlp." not in r.ours]


def expert_rules(model: nn.Module, moe: str, names: Callable[[int], tuple[str, str, str]]) -> list[Rule]:
    """Router and stacked experts of every layer; ``moe`` is the Hugging Face block's name in a layer
    (``block_sparse_moe`` / ``mlp``), ``names(e)`` expert e's (gate, up, down) tensor names below it."""
    c = model.config
    rules = []
    for i in range(c.n_layer):
        p, h = f"blocks.{i}.mlp.", f"model.layers.{i}.{moe}."
        parts = [names(e) for e in range(c.n_experts)]
        rules += [Rule(p + "router.weight", (h + "gate.weight",)),
                  Rule(p + "experts.gate_up.weight", tuple(h + n for g, u, _ in parts for n in (g, u)),
                       sizes=(c.moe_intermediate_size,) * (2 * c.n_experts)),
                  Rule(p + "experts.proj.weight", tuple(h + d for *_, d in parts), sizes=(c.n_embd,) * c.n_experts)]
    return rules


def rules(model: nn.Module) -> list[Rule]:
    return body_rules(model) + expert_rules(
        model, "block_sparse_moe", lambda e: (f"experts.{e}.w1.weight", f"experts.{e}.w3.weight",
                                              f"experts.{e}.w2.weight"))


def attention_slices(model: nn.Module, rules: list[Rule]) -> list[LinearSlice]:
    """What PEFT methods target: the attention linears (q/k/v/o) and a shared expert's, not the router or the
    routed experts (stacked weights, not linear layers)."""
    return block_linears(model, [r for r in rules if ".experts." not in r.ours and ".router." not in r.ours
                                 and ".shared_gate." not in r.ours])


def to_hf_config(model: nn.Module) -> dict:
    c = model.config
    check(c)
    return {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", **llama.body_hf_config(c),
            "intermediate_size": c.moe_intermediate_size, "num_local_experts": c.n_experts,
            "num_experts_per_tok": c.n_experts_per_tok,
            "router_aux_loss_coef": c.router_aux_coef, "router_jitter_noise": 0.0, "output_router_logits": False,
            "sliding_window": None}


def check_attention(hf: dict, source: str) -> dict:
    """The rope parameters, after refusing what the Llama body does not do (other RoPE, a sliding window)."""
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise LmstackError(f"{source}: rope type '{rope.get('rope_type')}' is not supported (only default RoPE)")
    window = hf.get("sliding_window") or 0
    if hf.get("use_sliding_window", True) and window and window < hf["max_position_embeddings"]:
        raise LmstackError(f"{source}: sliding-window attention is not supported")
    return rope


def body_config(hf: dict, source: str, rope: dict) -> dict:
    """The Llama-body ``ModelConfig`` fields of a Mixtral / Qwen2-MoE config.json."""
    n_head = hf["num_attention_heads"]
    return dict(vocab_size=hf["vocab_size"], block_size=hf["max_position_embeddings"],
                n_layer=hf["num_hidden_layers"], n_head=n_head, n_kv_head=hf.get("num_key_value_heads") or n_head,
                n_embd=hf["hidden_size"], head_dim=hf.get("head_dim") or hf["hidden_size"] // n_head, bias=False,
                activation=activation(hf.get("hidden_act", "silu"), source), norm_eps=hf.get("rms_norm_eps", 1e-6),
                rope_theta=rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
                tie_embeddings=hf.get("tie_word_embeddings", False),
                router_aux_coef=hf.get("router_aux_loss_coef", 0.01))


def from_hf_config(hf: dict, source: str) -> ModelConfig:
    rope = check_attention(hf, source)
    if hf.get("router_jitter_noise", 0.0):
        raise LmstackError(f"{source}: router_jitter_noise {hf['router_jitter_noise']} is not supported (only 0)")
    return ModelConfig(family="mixtral", **body_config(hf, source, rope), qkv_bias=False,
                       intermediate_size=hf["intermediate_size"], moe_intermediate_size=hf["intermediate_size"],
                       n_experts=hf["num_local_experts"], n_experts_per_tok=hf["num_experts_per_tok"],
                       norm_topk_prob=True)


MIXTRAL = register(Family(
    name="mixtral", build=build, hf_model_types=("mixtral",), hf_architectures=("MixtralForCausalLM",),
    to_hf_config=to_hf_config, from_hf_config=from_hf_config, rules=rules,
    linear_slices=lambda model: attention_slices(model, rules(model)), intermediate_size=llama.intermediate_size,
    checkpoint_names=llama.checkpoint_names, materialise=materialise))
