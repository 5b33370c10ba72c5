"""BERT (Devlin et al. 2019): the bidirectional encoder, and what ``transformers`` loads as ``BertModel`` /
``BertFor*``.

A folder has ``config.json`` (BERT's fields, our ``ModelConfig`` under ``lmstack``), ``model.safetensors``
under BERT's tensor names and the tokenizer; ``load_encoder`` reads such folders written by ``transformers``,
by sentence-transformers (``BertModel`` weights without the ``bert.`` prefix) or by us, with any head. Our fused
q/k/v is BERT's query/key/value concatenated. ``fingerprint`` names an encoder's exact text -> vector function,
so an index can refuse a different one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from lmstack.errors import LmstackError
from lmstack.io import read_json, write_json
from lmstack.model.blocks import MLP, Attention, PostNormBlock, layer_norm
from lmstack.model.config import ModelConfig
from lmstack.model.encoder import Encoder
from lmstack.model.encoder_text import specials, with_framing
from lmstack.model.families.hf_common import ACT_TO_HF, activation
from lmstack.model.registry import Family, LinearSlice, Rule, block_linears, register
from lmstack.model.heads import (EncoderForMaskedLM, EncoderForMultipleChoice, EncoderForQuestionAnswering,
                                 EncoderForSequenceClassification)
from lmstack.model.hf import from_hf_config as read_config
from lmstack.model.hf import load_weights
from lmstack.text.tokenizer import Tokenizer
from lmstack.model.skeleton import empty_weights

# head name -> (our class, Hugging Face architecture); None is the bare encoder.
HEADS: dict[str | None, tuple[type[nn.Module], str]] = {
    None: (Encoder, "BertModel"),
    "mlm": (EncoderForMaskedLM, "BertForMaskedLM"),
    "qa": (EncoderForQuestionAnswering, "BertForQuestionAnswering"),
    "classification": (EncoderForSequenceClassification, "BertForSequenceClassification"),
    "multiple-choice": (EncoderForMultipleChoice, "BertForMultipleChoice"),
}
_HEAD_OF_ARCH = {arch: head for head, (_, arch) in HEADS.items()} | {"BertForPreTraining": "mlm"}
# Tensors that belong to no head of ours, or that are copies of others (the tied MLM decoder).
_IGNORED = ("embeddings.position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias")
_HEAD_PREFIXES = ("pooler.", "cls.", "qa_outputs.", "classifier.")


# ----------------------------------------------------------------------------------------------- builder

def build_encoder(config: ModelConfig) -> Encoder:
    """A BERT encoder of ``config`` (family ``bert``), shaped so that ``transformers.BertModel`` can load it."""
    c = config
    if c.family != "bert":
        raise LmstackError(f"model.family is '{c.family}'; an encoder needs family 'bert' (e.g. the bert-tiny preset)")
    if not (c.bias and c.qkv_bias) or c.n_kv_head != c.n_head or c.head_dim * c.n_head != c.n_embd:
        raise LmstackError("a bert-family model needs bias and qkv_bias, n_kv_head == n_head and "
                           "head_dim == n_embd / n_head, as BertModel has")

    def block() -> PostNormBlock:
        return PostNormBlock(Attention(c, rope=False, causal=False), MLP(c), layer_norm(c.n_embd, c.norm_eps, True),
                             layer_norm(c.n_embd, c.norm_eps, True), c.dropout)
    return Encoder(c, [block() for _ in range(c.n_layer)])


def _head_name(model: nn.Module) -> str | None:
    return next(name for name, (cls, _) in HEADS.items() if type(model) is cls)


# ----------------------------------------------------------------------------------------------- configs

def to_hf_config(model: nn.Module) -> dict:
    """``config.json`` as ``transformers.BertConfig`` reads it; our ``ModelConfig`` rides under ``lmstack``."""
    c, head = model.config, _head_name(model)
    config = {"architectures": [HEADS[head][1]], "model_type": "bert", "dtype": "float32",
              "vocab_size": c.vocab_size, "hidden_size": c.n_embd, "num_hidden_layers": c.n_layer,
              "num_attention_heads": c.n_head, "intermediate_size": c.intermediate_size,
              "hidden_act": ACT_TO_HF[c.activation], "hidden_dropout_prob": c.dropout,
              "attention_probs_dropout_prob": c.dropout, "max_position_embeddings": c.block_size,
              "type_vocab_size": c.type_vocab_size, "layer_norm_eps": c.norm_eps, "pad_token_id": 0,
              "position_embedding_type": "absolute", "tie_word_embeddings": True,
              "lmstack": dataclasses.asdict(c)}
    if head == "classification":
        config["id2label"] = {str(i): f"LABEL_{i}" for i in range(model.num_labels)}
        config["label2id"] = {f"LABEL_{i}": i for i in range(model.num_labels)}
    return config


def from_hf_config(hf: dict, source: str) -> ModelConfig:
    """Our ``ModelConfig`` (family ``bert``) for a Hugging Face BERT ``config.json``."""
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise LmstackError(f"{source}: position_embedding_type '{hf['position_embedding_type']}' is not supported "
                           "(only absolute)")
    if hf.get("is_decoder"):
        raise LmstackError(f"{source}: is_decoder is true; lmstack encoders are bidirectional")
    return ModelConfig(family="bert", vocab_size=hf["vocab_size"], block_size=hf["max_position_embeddings"],
                       n_layer=hf["num_hidden_layers"], n_head=hf["num_attention_heads"],
                       n_embd=hf["hidden_size"], intermediate_size=hf["intermediate_size"],
                       activation=activation(hf.get("hidden_act", "gelu"), source, "hidden_act"),
                       norm_eps=hf.get("layer_norm_eps", 1e-12), type_vocab_size=hf.get("type_vocab_size", 2),
                       dropout=hf.get("hidden_dropout_prob", 0.1))


def save_tokenizer(tokenizer: Tokenizer, folder: Path) -> dict:
    """The tokenizer with a post-processor that frames texts as ``encode_pairs`` does, and a
    tokenizer_config.json naming its [CLS]/[SEP]/[PAD]/[MASK] roles and asking for token_type_ids, so
    ``AutoTokenizer`` frames, pads, masks and segments as we do."""
    tokenizer = with_framing(tokenizer)
    tokenizer.save(folder)
    s = specials(tokenizer)
    roles = {"cls_token": s.cls, "sep_token": s.sep, "pad_token": s.pad, "mask_token": s.mask}
    write_json(folder / "tokenizer_config.json", {
        **read_json(folder / "tokenizer_config.json"), **{k: v for k, v in roles.items() if v is not None},
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"]})
    return {"pad_token_id": s.pad_id}


# ----------------------------------------------------------------------------------------------- tensors

def _body_rules(c: ModelConfig, prefix: str) -> list[Rule]:
    e = prefix + "embeddings."
    rules = [Rule("tok_emb.weight", (e + "word_embeddings.weight",)),
             Rule("pos_emb.weight", (e + "position_embeddings.weight",)),
             Rule("type_emb.weight", (e + "token_type_embeddings.weight",))]
    pairs = [("norm_emb", "embeddings.LayerNorm"),
             *[(f"blocks.{i}.{ours}", f"encoder.layer.{i}.{theirs}") for i in range(c.n_layer)
               for ours, theirs in [("attn.proj", "attention.output.dense"), ("norm1", "attention.output.LayerNorm"),
                                    ("mlp.fc", "intermediate.dense"), ("mlp.proj", "output.dense"),
                                    ("norm2", "output.LayerNorm")]]]
    for ours, theirs in pairs:
        rules += [Rule(f"{ours}.{k}", (f"{prefix}{theirs}.{k}",)) for k in ("weight", "bias")]
    for i in range(c.n_layer):
        att = f"{prefix}encoder.layer.{i}.attention.self."
        rules += [Rule(f"blocks.{i}.attn.qkv.{k}", tuple(f"{att}{x}.{k}" for x in ("query", "key", "value")),
                       sizes=(c.n_embd,) * 3) for k in ("weight", "bias")]
    return rules


def _linear(ours: str, theirs: str) -> list[Rule]:
    return [Rule(f"{ours}.{k}", (f"{theirs}.{k}",)) for k in ("weight", "bias")]


_HEAD_RULES = {
    "mlm": _linear("transform", "cls.predictions.transform.dense") + _linear(
        "norm", "cls.predictions.transform.LayerNorm") + [Rule("bias", ("cls.predictions.bias",))],
    "qa": _linear("qa_outputs", "qa_outputs"),
    "classification": _linear("pooler", "bert.pooler.dense") + _linear("classifier", "classifier"),
    "multiple-choice": _linear("pooler", "bert.pooler.dense") + _linear("classifier", "classifier"),
}


def rules(model: nn.Module) -> list[Rule]:
    """Our state-dict names -> BERT's, for the bare encoder (no prefix, as BertModel saves) or a head."""
    head = _head_name(model)
    if head is None:
        return _body_rules(model.config, "")
    body = [dataclasses.replace(r, ours="encoder." + r.ours) for r in _body_rules(model.config, "bert.")]
    return body + _HEAD_RULES[head]


def checkpoint_names(hf: dict, model: nn.Module) -> dict:
    """A head's folder read as a bare encoder drops the ``bert.`` prefix; tensors of other heads (and copies) are
    dropped, anything else that does not fit stays, to be named as unexpected."""
    if _head_name(model) is None:
        hf = {k.removeprefix("bert."): v for k, v in hf.items()}
    wanted = {name for rule in rules(model) for name in rule.theirs}
    return {k: v for k, v in hf.items()
            if k in wanted or not k.removeprefix("bert.").startswith(_HEAD_PREFIXES + _IGNORED)}


def linear_slices(model: nn.Module) -> list[LinearSlice]:
    """query / key / value (rows of our fused qkv), attention.output.dense, intermediate.dense, output.dense."""
    return block_linears(model, rules(model))


BERT = register(Family(
    name="bert", build=build_encoder, hf_model_types=("bert",), hf_architectures=tuple(_HEAD_OF_ARCH),
    to_hf_config=to_hf_config, from_hf_config=from_hf_config, rules=rules, linear_slices=linear_slices,
    checkpoint_names=checkpoint_names, save_tokenizer=save_tokenizer, generates=False,
    peft_task_type="FEATURE_EXTRACTION"))


# ----------------------------------------------------------------------------------------------- loading

def load_encoder(directory: str | Path, head: str | None = None, device: str | torch.device = "cpu"
                 ) -> tuple[nn.Module, Tokenizer | None]:
    """(model, tokenizer) from a BERT folder; ``head`` is None (the bare encoder, from any BERT folder), "mlm",
    "qa", "classification" or "multiple-choice". The tokenizer is None where the folder has no tokenizer.json."""
    path = Path(directory)
    if head not in HEADS:
        raise LmstackError(f"head '{head}' is not one of {', '.join(str(h) for h in HEADS)}")
    if not path.is_dir():
        raise LmstackError(f"{path}: encoder directory not found")
    hf = read_json(path / "config.json")
    if hf.get("model_type") != "bert":
        raise LmstackError(f"{path / 'config.json'}: model_type '{hf.get('model_type')}' is not a BERT encoder")
    config = read_config(hf, str(path / "config.json"))
    arch = (hf.get("architectures") or ["BertModel"])[0]
    if head is not None and _HEAD_OF_ARCH.get(arch) != head:
        raise LmstackError(f"{path}: holds a {arch}, which has no '{head}' head")
    with empty_weights():
        model = _with_head(build_encoder(config), head, hf)
    model = load_weights(model, path)
    tokenizer = Tokenizer.load(path) if (path / "tokenizer.json").is_file() else None
    return model.to(device).eval(), tokenizer


def _with_head(encoder: Encoder, head: str | None, hf: dict) -> nn.Module:
    if head is None:
        return encoder
    if head == "classification":
        return EncoderForSequenceClassification(encoder, len(hf.get("id2label") or {}) or hf.get("num_labels", 2))
    return HEADS[head][0](encoder)


def fingerprint(model: nn.Module, tokenizer: Tokenizer | None, **extra) -> str:
    """sha256 over the config, the head, every weight, the tokenizer and ``extra`` (pooling, max length): equal
    fingerprints mean identical text -> output functions, so vectors from different encoders never mix."""
    h = hashlib.sha256()
    meta = {"config": dataclasses.asdict(model.config), "head": _head_name(model),
            "tokenizer": with_framing(tokenizer).sha256 if tokenizer is not None else None, **extra}
    h.update(json.dumps(meta, sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()
