"""LoRA on the T5 encoder-decoder: peft loads our adapter onto transformers' T5ForConditionalGeneration with the same
logits (q and v of the self- and cross-attention of both stacks, v being rows of our fused k/v)."""

from __future__ import annotations

import torch
import transformers

from lmstack.adapt.lora import LoRA
from lmstack.adapt.methods import base_fingerprint, save_adapter
from lmstack.model import build_model, preset
from lmstack.model.hf import load_model, save_model


def test_peft_loads_our_t5_adapter(tmp_path):
    from peft import PeftModel

    torch.manual_seed(0)
    base = save_model(build_model(preset("t5-tiny", vocab_size=97, n_embd=32, head_dim=8, intermediate_size=48)),
                      tmp_path / "base")
    method = LoRA(r=4, alpha=8, targets=["q", "v", "wi_1"])
    model = method.apply(load_model(base)).eval()
    names = {s.hf_module for s in method.select(model)}
    assert {"decoder.block.1.layer.1.EncDecAttention.v", "encoder.block.0.layer.1.DenseReluDense.wi_1"} <= names
    torch.manual_seed(1)
    with torch.no_grad():  # pretend training happened (B starts at zero)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    save_adapter(method, model, tmp_path / "adapter", base_fingerprint(model), str(base))
    theirs = PeftModel.from_pretrained(transformers.T5ForConditionalGeneration.from_pretrained(base),
                                       tmp_path / "adapter").eval()
    x, y = torch.randint(0, 97, (2, 9)), torch.randint(0, 97, (2, 5))
    with torch.no_grad():
        torch.testing.assert_close(model(x, y), theirs(input_ids=x, decoder_input_ids=y).logits, atol=1e-4, rtol=0)
