"""Mixtral and Qwen2-MoE: identical random weights in lmstack and transformers give the same logits in both
directions, the same greedy tokens, and our directories round-trip bit-exactly."""

from __future__ import annotations

import pytest
import torch
import transformers
from safetensors.torch import load_file

from lmstack.adapt.lora import LoRA
from lmstack.adapt.methods import base_fingerprint, save_adapter
from lmstack.errors import LmstackError
from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.model import build_model, preset
from lmstack.model import moe
from lmstack.model.hf import load_model, save_model

VOCAB = 97
BODY = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=64)
THEIRS = {
    "mixtral": lambda: transformers.MixtralConfig(**BODY, intermediate_size=48, num_local_experts=4,
                                                  num_experts_per_tok=2),
    "qwen2_moe": lambda: transformers.Qwen2MoeConfig(**BODY, intermediate_size=48, moe_intermediate_size=24,
                                                     shared_expert_intermediate_size=40, num_experts=4,
                                                     num_experts_per_tok=2),
    "qwen2_moe-norm-top1": lambda: transformers.Qwen2MoeConfig(**BODY, intermediate_size=48, moe_intermediate_size=24,
                                                               shared_expert_intermediate_size=40, num_experts=4,
                                                               num_experts_per_tok=1, norm_topk_prob=True),
}
OURS = {
    "mixtral": dict(name="llama-moe-tiny", n_layer=2, n_experts=4, tie_embeddings=False),
    "mixtral-top1-tied": dict(name="llama-moe-tiny", n_layer=2, n_experts=4, n_experts_per_tok=1),
    "qwen2_moe": dict(name="llama-moe-tiny", n_layer=2, family="qwen2_moe", qkv_bias=True, n_shared_experts=1,
                      shared_expert_intermediate_size=96, norm_topk_prob=False, tie_embeddings=False),
}
PROMPT = [5, 17, 42, 8, 91, 33, 60]


def _randomise(model: torch.nn.Module) -> None:
    """Move every tensor off its init (Qwen2-MoE's router starts at zeros: no ties in its top-k)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _x() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(1))


def _greedy(model, n: int = 20) -> list[int]:
    return torch.stack(list(decode(model, [PROMPT], GenerationConfig(max_new_tokens=n))), dim=1)[0].tolist()


@pytest.mark.parametrize("case", THEIRS)
def test_transformers_to_lmstack(case, tmp_path, monkeypatch):
    torch.manual_seed(0)
    theirs = transformers.AutoModelForCausalLM.from_config(THEIRS[case]()).eval()
    _randomise(theirs)
    theirs.save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf").eval()
    assert ours.config.family == case.split("-")[0]
    with torch.no_grad():
        torch.testing.assert_close(ours(_x()), theirs(_x()).logits, atol=1e-4, rtol=0)
    hf = theirs.generate(torch.tensor([PROMPT]), max_new_tokens=20, do_sample=False, pad_token_id=0)
    assert _greedy(ours) == hf[0, len(PROMPT):].tolist()
    monkeypatch.setattr(moe, "DENSE_DISPATCH_MAX", 0)  # tokens gathered per expert, not every expert on all
    with torch.no_grad():
        torch.testing.assert_close(ours(_x()), theirs(_x()).logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("case", OURS)
def test_lmstack_to_transformers(case, tmp_path):
    kw = dict(OURS[case])
    model = build_model(preset(kw.pop("name"), vocab_size=VOCAB, **kw)).eval()
    _randomise(model)
    save_model(model, tmp_path / "m")
    theirs, info = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "m", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    with torch.no_grad():
        torch.testing.assert_close(model(_x()), theirs.eval()(_x()).logits, atol=1e-4, rtol=0)
    hf = theirs.generate(torch.tensor([PROMPT]), max_new_tokens=20, do_sample=False, pad_token_id=0)
    assert _greedy(model) == hf[0, len(PROMPT):].tolist()


@pytest.mark.parametrize("case", ["mixtral", "qwen2_moe"])
def test_round_trip_is_bit_exact(case, tmp_path):
    kw = dict(OURS[case])
    model = build_model(preset(kw.pop("name"), vocab_size=VOCAB, **kw))
    _randomise(model)
    save_model(model, tmp_path / "a")
    again = load_model(tmp_path / "a")
    save_model(again, tmp_path / "b")
    assert again.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    names = load_file(tmp_path / "a" / "model.safetensors")
    moe = "block_sparse_moe.experts.3.w2" if case == "mixtral" else "mlp.shared_expert_gate"
    assert f"model.layers.1.{moe}.weight" in names


def test_unsupported_hugging_face_variants_are_refused(tmp_path):
    config = transformers.Qwen2MoeConfig(**BODY, intermediate_size=48, moe_intermediate_size=24,
                                         shared_expert_intermediate_size=40, num_experts=4, decoder_sparse_step=2)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "q")
    with pytest.raises(LmstackError, match="decoder_sparse_step 2"):
        load_model(tmp_path / "q")
    with pytest.raises(LmstackError, match="no shared expert"):  # refused when built, before any training
        build_model(preset("llama-moe-tiny", n_layer=1, vocab_size=VOCAB, n_shared_experts=1))


def test_peft_loads_our_lora_on_attention_and_the_shared_expert(tmp_path):
    """LoRA targets the attention linears and a shared expert's (the router and the stacked routed experts
    are no linear layers: not targets); peft applies our adapter to the exported model with the same logits."""
    from peft import PeftModel  # slow to import: only here

    kw = dict(OURS["qwen2_moe"])
    base = build_model(preset(kw.pop("name"), vocab_size=VOCAB, **kw)).eval()
    _randomise(base)
    save_model(base, tmp_path / "base")
    method = LoRA(r=4, alpha=8, targets=["q_proj", "v_proj", "shared_expert.up_proj"])
    model = method.apply(load_model(tmp_path / "base")).eval()
    assert {s.hf_module.split("layers.0.")[-1] for s in method.select(model) if "layers.0." in s.hf_module} == {
        "self_attn.q_proj", "self_attn.v_proj", "mlp.shared_expert.up_proj"}
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # pretend training happened: B starts at zero
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    save_adapter(method, model, tmp_path / "adapter", base_fingerprint(model), str(tmp_path / "base"))
    theirs = PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base"),
                                       tmp_path / "adapter").eval()
    with torch.no_grad():
        ours = model(_x())
        torch.testing.assert_close(ours, theirs(_x()).logits, atol=1e-4, rtol=0)
        assert not torch.allclose(ours, base(_x()), atol=1e-3)  # the adapter changes the logits
