"""The model-family registry: names and Hugging Face configs find their family, every family builds through
``build_model``, and a family registered from outside (a toy one, here) builds, saves, loads and takes LoRA
through the generic API without touching the built-in ones."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import transformers
from torch import nn

from lmstack.adapt.lora import LoRA
from lmstack.errors import LmstackError
from lmstack.model import ModelConfig, build_model, linear_slices, preset
from lmstack.model.blocks import Attention, Block, SwiGLU, layer_norm
from lmstack.model.encoder import Encoder
from lmstack.model import registry
from lmstack.model.families import Family, Rule, family_for_hf, get_family, names, register
from lmstack.model.families.bert import load_encoder
from lmstack.cli import main
from lmstack.model.hf import load_causal_lm, load_model, save_model
from lmstack.model.transformer import Transformer, materialise


def test_unknown_family_is_one_line_naming_the_registered_ones():
    with pytest.raises(LmstackError, match="model.family 'rwkv' is not a registered family; choose one of") as e:
        ModelConfig(family="rwkv")  # (t5 is registered now: lmstack.model.families.t5)
    assert "\n" not in str(e.value) and all(n in str(e.value) for n in ("gpt2", "llama", "bert", "t5"))
    with pytest.raises(LmstackError, match="'rwkv' is not a registered family"):
        get_family("rwkv")
    with pytest.raises(LmstackError, match="already registered"):
        register(get_family("gpt2"))


@pytest.mark.parametrize("hf, family", [
    ({"model_type": "gpt2"}, "gpt2"), ({"model_type": "mistral"}, "llama"), ({"model_type": "qwen2"}, "llama"),
    ({"model_type": "bert"}, "bert"), ({"architectures": ["BertForMaskedLM"]}, "bert"),
    ({"architectures": ["LlamaForCausalLM"]}, "llama"),
    ({"model_type": "gpt2", "lmstack": {"family": "llama"}}, "llama"),
])
def test_family_for_hf(hf, family):
    assert family_for_hf(hf).name == family


def test_build_model_builds_every_family():
    assert isinstance(build_model(preset("gpt2-tiny")), Transformer)
    assert isinstance(build_model(preset("llama-tiny")), Transformer)
    encoder = build_model(preset("bert-tiny", vocab_size=50, n_embd=32))
    assert isinstance(encoder, Encoder) and encoder(torch.randint(0, 50, (2, 7))).shape == (2, 7, 32)


def test_load_model_reads_a_transformers_bert_folder_as_the_bare_encoder(tmp_path):
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=32)
    theirs = transformers.BertForMaskedLM(config).eval()
    theirs.save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf").eval()
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        hidden = theirs(ids, output_hidden_states=True).hidden_states[-1]
        torch.testing.assert_close(ours(ids), hidden, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours(ids), load_encoder(tmp_path / "hf")[0](ids), atol=0, rtol=0)
    save_model(ours, tmp_path / "ours")
    assert not (tmp_path / "ours" / "generation_config.json").exists()  # an encoder does not generate


def test_commands_that_decode_refuse_an_encoder_folder_in_one_line(tmp_path, capsys):
    folder = save_model(build_model(preset("bert-tiny", vocab_size=50)), tmp_path / "bert")
    with pytest.raises(LmstackError, match="bert encoder predicts no next token.*gpt2, llama"):
        load_causal_lm(folder)
    (tmp_path / "a.txt").write_text("some text")
    for argv in (["generate", "hi", "--model", str(folder)], ["perplexity", "--model", str(folder), "--input",
                                                              str(tmp_path / "a.txt")]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and len(err.splitlines()) == 1 and "predicts no next token" in err, err
    assert isinstance(load_model(folder), Encoder)  # what reads any family still does


def test_linear_slices_come_from_the_family():
    bert = build_model(preset("bert-tiny", vocab_size=50, n_embd=32, n_head=4))
    got = [(s.module, s.hf_module, s.start, s.end) for s in linear_slices(bert) if s.module.startswith("blocks.0.")]
    assert got == [("blocks.0.attn.proj", "encoder.layer.0.attention.output.dense", 0, 32),
                   ("blocks.0.mlp.fc", "encoder.layer.0.intermediate.dense", 0, 128),
                   ("blocks.0.mlp.proj", "encoder.layer.0.output.dense", 0, 32),
                   ("blocks.0.attn.qkv", "encoder.layer.0.attention.self.query", 0, 32),
                   ("blocks.0.attn.qkv", "encoder.layer.0.attention.self.key", 32, 64),
                   ("blocks.0.attn.qkv", "encoder.layer.0.attention.self.value", 64, 96)]
    llama = build_model(preset("llama-tiny", vocab_size=50))
    qkv = [(s.hf_module.rsplit(".", 1)[-1], s.end - s.start) for s in linear_slices(llama) if "attn.qkv" in s.module]
    assert qkv[:3] == [("q_proj", 128), ("k_proj", 64), ("v_proj", 64)]  # grouped-query: 2 of 4 kv heads


# ---------------------------------------------------------------------------------------- a family from outside

def _toy_build(c: ModelConfig) -> Transformer:
    """Pre-norm LayerNorm blocks with a SwiGLU MLP and learned positions: no built-in family is this."""
    def block() -> Block:
        return Block(Attention(c, rope=False), SwiGLU(c), layer_norm(c.n_embd, c.norm_eps, False),
                     layer_norm(c.n_embd, c.norm_eps, False), c.dropout)
    return Transformer(c, [block() for _ in range(c.n_layer)], layer_norm(c.n_embd, c.norm_eps, False),
                       pos_emb=nn.Embedding(c.block_size, c.n_embd), rope=None)


def _toy_rules(model: nn.Module) -> list[Rule]:
    c = model.config
    rules = [Rule("tok_emb.weight", ("toy.embed.weight",)), Rule("pos_emb.weight", ("toy.positions.weight",)),
             Rule("norm_f.weight", ("toy.norm.weight",)),
             Rule("lm_head.weight", ("toy.head.weight",), saved=not c.tie_embeddings)]
    for i in range(c.n_layer):
        p, h = f"blocks.{i}.", f"toy.layers.{i}."
        rules += [Rule(p + "norm1.weight", (h + "ln_attn.weight",)), Rule(p + "norm2.weight", (h + "ln_mlp.weight",)),
                  Rule(p + "attn.qkv.weight", tuple(h + x for x in ("wq.weight", "wk.weight", "wv.weight")),
                       sizes=(c.n_embd,) * 3),
                  Rule(p + "attn.proj.weight", (h + "wo.weight",)),
                  Rule(p + "mlp.gate_up.weight", (h + "w1.weight", h + "w3.weight"), sizes=(c.intermediate_size,) * 2),
                  Rule(p + "mlp.proj.weight", (h + "w2.weight",))]
    return rules


def _toy_from_hf(hf: dict, source: str) -> ModelConfig:
    return ModelConfig(family="toy", vocab_size=hf["vocab"], block_size=hf["context"], n_layer=hf["layers"],
                       n_head=hf["heads"], n_embd=hf["width"], bias=False, activation="silu")


TOY = Family(
    name="toy", build=_toy_build, hf_model_types=("lmstack-toy",), rules=_toy_rules,
    to_hf_config=lambda m: {"model_type": "lmstack-toy", "vocab": m.config.vocab_size, "context": m.config.block_size,
                            "layers": m.config.n_layer, "heads": m.config.n_head, "width": m.config.n_embd,
                            "lmstack": dataclasses.asdict(m.config)},
    from_hf_config=_toy_from_hf, linear_slices=lambda m: registry.block_linears(m, _toy_rules(m)),
    intermediate_size=lambda d: 3 * d, materialise=materialise)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))  # registered for this test only
    return register(TOY)


def test_a_registered_family_builds_saves_loads_and_takes_lora(toy, tmp_path):
    assert "toy" in names()
    config = ModelConfig(family="toy", vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=16, bias=False,
                         activation="silu")
    assert config.intermediate_size == 48  # the family's rule
    torch.manual_seed(0)
    model = build_model(config).eval()
    save_model(model, tmp_path / "toy")
    files = json.loads((tmp_path / "toy" / "config.json").read_text())
    assert files["model_type"] == "lmstack-toy"
    x = torch.randint(0, 40, (2, 10))
    again = load_model(tmp_path / "toy").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), atol=0, rtol=0)
    del files["lmstack"]  # read through the family's own config mapping
    (tmp_path / "toy" / "config.json").write_text(json.dumps(files))
    assert load_model(tmp_path / "toy").config == config
    chosen = LoRA(r=2, targets=["wq", "w3"]).select(model)
    assert [(s.module, s.start, s.end) for s in chosen[:2]] == [("blocks.0.attn.qkv", 0, 16),
                                                                 ("blocks.0.mlp.gate_up", 48, 96)]
    assert get_family("gpt2").name == "gpt2" and "toy" not in get_family("llama").hf_model_types
