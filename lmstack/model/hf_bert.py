"""Encoders in Hugging Face BERT format: what ``transformers`` loads as ``BertModel`` / ``BertFor*``.

``save_encoder`` writes ``config.json`` (BERT fields, our ``ModelConfig`` under ``lmstack``), ``model.safetensors``
under BERT's tensor names and the tokenizer; ``load_encoder`` reads such folders written by ``transformers``,
by sentence-transformers (``BertModel`` weights without the ``bert.`` prefix) or by us. Our fused q/k/v is
BERT's query/key/value concatenated. Nothing is unpickled (safetensors, or ``weights_only`` for ``.bin``).
``fingerprint`` names an encoder's exact text -> vector function, so an index can refuse a different one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from lmstack.config import build
from lmstack.text.tokenizer import Tokenizer
from lmstack.errors import LmstackError
from lmstack.io import atomic_dir, read_json, write_json
from lmstack.model.config import ModelConfig
from lmstack.model.encoder import Encoder, build_encoder
from lmstack.model.encoder_text import specials, with_framing
from lmstack.model.heads import (EncoderForMaskedLM, EncoderForMultipleChoice, EncoderForQuestionAnswering,
                                 EncoderForSequenceClassification)
from lmstack.model.hf import _ACT_FROM_HF, _ACT_TO_HF, Rule, read_weights

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


def _body_rules(c: ModelConfig, prefix: str) -> list[Rule]:
    e = prefix + "embeddings."
    rules = [Rule("tok_emb.weight", (e + "word_embeddings.weight",)),
             Rule("pos_emb.weight", (e + "position_embeddings.weight",)),
             Rule("type_emb.weight", (e + "token_type_embeddings.weight",))]
    pairs = [("norm_emb", None), *[(f"blocks.{i}.{ours}", f"encoder.layer.{i}.{theirs}") for i in range(c.n_layer)
                                   for ours, theirs in [("attn.proj", "attention.output.dense"),
                                                        ("norm1", "attention.output.LayerNorm"),
                                                        ("mlp.fc", "intermediate.dense"),
                                                        ("mlp.proj", "output.dense"),
                                                        ("norm2", "output.LayerNorm")]]]
    for ours, theirs in pairs:
        theirs = theirs or "embeddings.LayerNorm"
        rules += [Rule(f"{ours}.{k}", (f"{prefix}{theirs}.{k}",)) for k in ("weight", "bias")]
    for i in range(c.n_layer):
        att = f"{prefix}encoder.layer.{i}.attention.self."
        rules += [Rule(f"blocks.{i}.attn.qkv.{k}", tuple(f"{att}{x}.{k}" for x in ("query", "key", "value")))
                  for k in ("weight", "bias")]
    return rules


def _rules(model: nn.Module) -> list[Rule]:
    """Our state-dict names -> BERT's, for the bare encoder (no prefix, as BertModel saves) or a head."""
    if isinstance(model, Encoder):
        return _body_rules(model.config, "")
    rules = [Rule("encoder." + r.ours, r.theirs) for r in _body_rules(model.config, "bert.")]
    linear = lambda ours, theirs: [Rule(f"{ours}.{k}", (f"{theirs}.{k}",)) for k in ("weight", "bias")]  # noqa: E731
    if isinstance(model, EncoderForMaskedLM):
        return rules + linear("transform", "cls.predictions.transform.dense") + \
            linear("norm", "cls.predictions.transform.LayerNorm") + [Rule("bias", ("cls.predictions.bias",))]
    if isinstance(model, EncoderForQuestionAnswering):
        return rules + linear("qa_outputs", "qa_outputs")
    return rules + linear("pooler", "bert.pooler.dense") + linear("classifier", "classifier")


def _head_name(model: nn.Module) -> str | None:
    return next(name for name, (cls, _) in HEADS.items() if type(model) is cls)


# ----------------------------------------------------------------------------------------------- configs

def to_hf_config(model: nn.Module, pad_token_id: int = 0) -> dict:
    """``config.json`` as ``transformers.BertConfig`` reads it; our ``ModelConfig`` rides under ``lmstack``."""
    c = model.config
    config = {"architectures": [HEADS[_head_name(model)][1]], "model_type": "bert", "dtype": "float32",
              "vocab_size": c.vocab_size, "hidden_size": c.n_embd, "num_hidden_layers": c.n_layer,
              "num_attention_heads": c.n_head, "intermediate_size": c.intermediate_size,
              "hidden_act": _ACT_TO_HF[c.activation], "hidden_dropout_prob": c.dropout,
              "attention_probs_dropout_prob": c.dropout, "max_position_embeddings": c.block_size,
              "type_vocab_size": c.type_vocab_size, "layer_norm_eps": c.norm_eps, "pad_token_id": pad_token_id,
              "position_embedding_type": "absolute", "tie_word_embeddings": True,
              "lmstack": dataclasses.asdict(c)}
    if isinstance(model, EncoderForSequenceClassification) and not isinstance(model, EncoderForMultipleChoice):
        config["id2label"] = {str(i): f"LABEL_{i}" for i in range(model.num_labels)}
        config["label2id"] = {f"LABEL_{i}": i for i in range(model.num_labels)}
    return config


def from_hf_config(hf: dict, source: str) -> ModelConfig:
    """Our ``ModelConfig`` (family ``bert``) for a Hugging Face BERT ``config.json``."""
    if hf.get("model_type") != "bert":
        raise LmstackError(f"{source}: model_type '{hf.get('model_type')}' is not a BERT encoder")
    if "lmstack" in hf:
        return build(ModelConfig, hf["lmstack"], source)
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise LmstackError(f"{source}: position_embedding_type '{hf['position_embedding_type']}' is not supported "
                           "(only absolute)")
    if hf.get("is_decoder"):
        raise LmstackError(f"{source}: is_decoder is true; lmstack encoders are bidirectional")
    act = hf.get("hidden_act", "gelu")
    if act not in _ACT_FROM_HF:
        raise LmstackError(f"{source}: hidden_act '{act}' is not supported; expected one of {', '.join(_ACT_FROM_HF)}")
    try:
        return ModelConfig(family="bert", vocab_size=hf["vocab_size"], block_size=hf["max_position_embeddings"],
                           n_layer=hf["num_hidden_layers"], n_head=hf["num_attention_heads"],
                           n_embd=hf["hidden_size"], intermediate_size=hf["intermediate_size"],
                           activation=_ACT_FROM_HF[act], norm_eps=hf.get("layer_norm_eps", 1e-12),
                           type_vocab_size=hf.get("type_vocab_size", 2),
                           dropout=hf.get("hidden_dropout_prob", 0.1))
    except KeyError as e:
        raise LmstackError(f"{source}: missing field {e} for a BERT config") from e


# ----------------------------------------------------------------------------------------------- weights

def to_hf_state(model: nn.Module) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    out = {}
    for rule in _rules(model):
        t = state[rule.ours]
        for name, part in zip(rule.theirs, t.chunk(len(rule.theirs), dim=0)):
            out[name] = part.detach().cpu().contiguous()
    return out


def from_hf_state(hf: dict[str, torch.Tensor], model: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """BERT tensors renamed (and q/k/v fused) into ``model``'s state dict. Tensors of other heads are dropped;
    anything else that does not fit is an error naming the tensor."""
    if isinstance(model, Encoder):  # BertModel has no prefix; a head's folder read as a bare encoder drops it
        hf = {k.removeprefix("bert."): v for k, v in hf.items()}
    expected, out = model.state_dict(), {}
    for rule in _rules(model):
        missing = [n for n in rule.theirs if n not in hf]
        if missing:
            raise LmstackError(f"{source}: tensor '{missing[0]}' is missing; is this checkpoint of another model?")
        parts = [hf.pop(n) for n in rule.theirs]
        want = expected[rule.ours].shape
        want = (want[0] // len(parts), *want[1:])
        if any(p.shape != want for p in parts):
            raise LmstackError(f"{source}: tensor '{rule.theirs[0]}' has shape {tuple(parts[0].shape)}, but "
                               f"config.json implies {want}")
        out[rule.ours] = torch.cat(parts, dim=0)
    left = [k for k in hf if not k.removeprefix("bert.").startswith(_HEAD_PREFIXES + _IGNORED)]
    if left:
        raise LmstackError(f"{source}: unexpected tensors {sorted(left)[:3]}; the checkpoint does not match config.json")
    return out


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


# ----------------------------------------------------------------------------------------------- files

def save_encoder(model: nn.Module, directory: str | Path, tokenizer: Tokenizer | None = None) -> Path:
    """Write an encoder (bare or with a head) as a Hugging Face BERT folder, atomically."""
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        write_encoder_files(model, tmp, tokenizer)
    return directory


def write_encoder_files(model: nn.Module, folder: Path, tokenizer: Tokenizer | None = None) -> None:
    """config.json, model.safetensors and the tokenizer into ``folder``; the tokenizer gets a post-processor that
    frames texts as ``encode_pairs`` does, and tokenizer_config.json names its [CLS]/[SEP]/[PAD]/[MASK] roles and
    asks for token_type_ids, so ``AutoTokenizer`` frames, pads, masks and segments as we do."""
    pad_id = 0
    if tokenizer is not None:
        tokenizer = with_framing(tokenizer)
        tokenizer.save(folder)
        s = specials(tokenizer)
        pad_id = s.pad_id
        roles = {"cls_token": s.cls, "sep_token": s.sep, "pad_token": s.pad, "mask_token": s.mask}
        write_json(folder / "tokenizer_config.json", {
            **read_json(folder / "tokenizer_config.json"), **{k: v for k, v in roles.items() if v is not None},
            "model_input_names": ["input_ids", "token_type_ids", "attention_mask"]})
    write_json(folder / "config.json", to_hf_config(model, pad_id))
    save_file(to_hf_state(model), str(folder / "model.safetensors"), metadata={"format": "pt"})


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
    config = from_hf_config(hf, str(path / "config.json"))
    arch = (hf.get("architectures") or ["BertModel"])[0]
    if head is not None and _HEAD_OF_ARCH.get(arch) != head:
        raise LmstackError(f"{path}: holds a {arch}, which has no '{head}' head")
    with torch.device("meta"):
        model = _build(config, head, hf)
    model.load_state_dict(from_hf_state(read_weights(path), model, str(path)), assign=True)
    tokenizer = Tokenizer.load(path) if (path / "tokenizer.json").is_file() else None
    return model.to(device).eval(), tokenizer


def _build(config: ModelConfig, head: str | None, hf: dict) -> nn.Module:
    encoder = build_encoder(config)
    if head is None:
        return encoder
    if head == "classification":
        return EncoderForSequenceClassification(encoder, len(hf.get("id2label") or {}) or hf.get("num_labels", 2))
    return HEADS[head][0](encoder)
