"""LoRA: merged == unmerged, unmerge restores the base, targets by Hugging Face name, peft reads our adapters."""

from __future__ import annotations

import pytest
import torch

from lmstack.adapt.lora import LoRA, LoRALinear, lora_layers, merge
from lmstack.adapt.methods import base_fingerprint, save_adapter
from lmstack.errors import LmstackError
from lmstack.model import build_model, preset
from lmstack.model.hf import load_model, save_model


def _trained(model, scale: float = 0.05):
    """Pretend training happened: B is zero at initialisation, which would make every check trivial."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * scale)
    return model


def test_merge_equals_unmerged_and_unmerge_restores_the_base(base):
    model = load_model(base).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model = _trained(LoRA(r=4, targets=["all-linear"]).apply(model))
    x = torch.randint(0, model.config.vocab_size, (2, 12))
    unmerged = model(x)
    for layer in lora_layers(model):
        layer.merge()
    assert torch.allclose(model(x), unmerged, atol=1e-5)
    for layer in lora_layers(model):
        layer.unmerge()
    restored = {k.replace(".base.", "."): v for k, v in model.state_dict().items() if "lora_" not in k}
    assert all(torch.allclose(restored[k], v, atol=1e-6) for k, v in before.items())
    assert torch.allclose(model(x), unmerged, atol=1e-5)


def test_merged_model_is_a_plain_model_that_transformers_loads(base, tmp_path):
    from transformers import AutoModelForCausalLM

    model = _trained(LoRA(r=4, targets=["all-linear"]).apply(load_model(base).eval()))
    x = torch.randint(0, model.config.vocab_size, (1, 12))
    expected = model(x)
    merged = merge(model)
    assert not lora_layers(merged)
    save_model(merged, tmp_path / "merged")
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()(input_ids=x).logits
    assert torch.allclose(theirs, expected, atol=1e-4)


def test_targets_pick_hugging_face_layers_and_count_parameters(base):
    model = load_model(base)
    names = {"gpt2": (["c_attn"], ["c_attn"]),
             "llama": (["q_proj", "v_proj"], ["q_proj", "v_proj"])}[model.config.family]
    method = LoRA(r=2, targets=names[0])
    adapted = method.apply(model)
    chosen = method.select(adapted)
    assert {s.hf_module.rsplit(".", 1)[-1] for s in chosen} == set(names[1])
    assert len(chosen) == len(names[1]) * model.config.n_layer
    expected = sum(2 * (model.config.n_embd + s.end - s.start) for s in chosen)
    assert sum(p.numel() for p in adapted.parameters() if p.requires_grad) == expected
    assert all(isinstance(m, LoRALinear) for m in lora_layers(adapted))


def test_only_the_first_two_layers_by_pattern(base):
    model = load_model(base)
    pattern = "transformer.h.0.*" if model.config.family == "gpt2" else "model.layers.0.*"
    chosen = LoRA(targets=[pattern]).select(model)
    assert chosen and all(s.module.startswith("blocks.0.") for s in chosen)


def test_unknown_target_lists_the_valid_names(base):
    with pytest.raises(LmstackError, match=r"lora.targets: 'qproj' matches no layer; valid names: .*(c_attn|q_proj)"):
        LoRA(targets=["qproj"]).apply(load_model(base))


def test_peft_loads_our_adapter_onto_the_exported_model(base, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = load_model(base)
    targets = ["c_attn", "c_fc"] if model.config.family == "gpt2" else ["q_proj", "v_proj", "up_proj"]
    method = LoRA(r=4, alpha=8, targets=targets)
    model = _trained(method.apply(model).eval())
    save_adapter(method, model, tmp_path / "adapter", base_fingerprint(model), str(base))
    x = torch.randint(0, model.config.vocab_size, (1, 12))
    hf = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), tmp_path / "adapter").eval()
    assert torch.allclose(hf(input_ids=x).logits, model(x), atol=1e-4)


@pytest.fixture
def bert(tmp_path):
    """A random BERT encoder folder (the family registry's linear slices make it a LoRA target too)."""
    torch.manual_seed(0)
    return save_model(build_model(preset("bert-tiny", vocab_size=50, n_embd=32, n_head=4, block_size=32)),
                      tmp_path / "bert")


def _bert_inputs():
    ids = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask


def test_bert_merge_equals_unmerged_and_unmerge_restores_the_base(bert):
    model = load_model(bert).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    method = LoRA(r=4, targets=["all-linear"])
    model = _trained(method.apply(model))
    assert len(method.select(model)) == 6 * model.config.n_layer  # q, k, v, attention out, intermediate, out
    ids, mask = _bert_inputs()
    unmerged = model(ids, mask)
    assert not torch.allclose(unmerged, load_model(bert).eval()(ids, mask), atol=1e-3)  # the update does something
    for layer in lora_layers(model):
        layer.merge()
    assert torch.allclose(model(ids, mask), unmerged, atol=1e-5)
    for layer in lora_layers(model):
        layer.unmerge()
    restored = {k.replace(".base.", "."): v for k, v in model.state_dict().items() if "lora_" not in k}
    assert all(torch.allclose(restored[k], v, atol=1e-6) for k, v in before.items())
    assert torch.allclose(merge(model)(ids, mask), unmerged, atol=1e-5) and not lora_layers(model)


def test_peft_loads_our_bert_adapter_onto_transformers_bert(bert, tmp_path):
    from peft import PeftModel
    from transformers import BertModel

    method = LoRA(r=4, alpha=8, targets=["query", "value", "intermediate.dense"])
    model = _trained(method.apply(load_model(bert)).eval())
    assert {s.hf_module.rsplit(".", 1)[-1] for s in method.select(model)} == {"query", "value", "dense"}
    save_adapter(method, model, tmp_path / "adapter", base_fingerprint(model), str(bert))
    ids, mask = _bert_inputs()
    hf = PeftModel.from_pretrained(BertModel.from_pretrained(bert), tmp_path / "adapter").eval()
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(theirs, model(ids, mask), atol=1e-4, rtol=0)
