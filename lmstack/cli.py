"""``lmstack <command>``: each command's function signature *is* its CLI (as in litgpt).

Parameters without a default become positional arguments (keyword-only ones: required ``--flags``), the
others ``--flags``; a parameter typed as a
config dataclass takes ``--config FILE.yaml`` plus ``--key value`` / ``--section.key value`` overrides.
The function returns a dict of figures: printed as one JSON object on stdout with ``--json``, else as
``key: value`` lines. Errors a user can cause print one line and exit non-zero (a traceback with ``--debug``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import inspect
import json
import sys
import typing
from pathlib import Path
from typing import Any
from collections.abc import Callable

from lmstack.config import build, check_seed, coerce, load_yaml, nest, strip_optional
from lmstack.errors import LmstackError

# name -> (module:function, one-line summary). Imported lazily so `lmstack --help` stays instant.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("lmstack.data.synth:synth", "write the built-in bilingual corpus about an invented world"),
    "clean": ("lmstack.data.clean.pipeline:clean", "filter, deduplicate and scrub a raw corpus"),
    "prepare": ("lmstack.data.prepare:prepare", "train/reuse a tokenizer and write token shards"),
    "train": ("lmstack.train.pretrain:train", "pretrain a Transformer on prepared shards"),
    "export": ("lmstack.train.export:export", "a Hugging Face model directory from a sharded (torchrun) checkpoint"),
    "generate": ("lmstack.generate.api:generate_cli", "decode text: greedy, beam or sampling"),
    "finetune": ("lmstack.adapt.finetune:finetune", "instruction-tune: full, lora, adapter, prefix or prompt"),
    "merge": ("lmstack.adapt.merge:merge_adapter", "fold a LoRA adapter into its base model"),
    "chat-eval": ("lmstack.eval.chat:chat_eval", "exact match of chat replies on test conversations"),
    "chat": ("lmstack.chat.terminal:chat", "chat with a model in the terminal (streaming, tools)"),
    "serve": ("lmstack.serve.app:serve", "OpenAI-compatible API server with continuous batching and a chat page"),
    "index": ("lmstack.retrieval.index:index", "build a BM25 / dense / hybrid retrieval index over passages"),
    "search": ("lmstack.retrieval.index:search", "search an index: BM25, dense or hybrid, optionally reranked"),
    "ir-eval": ("lmstack.eval.ir:ir_eval", "recall@k, MRR@k, nDCG@k and MAP of a run against TREC qrels"),
    "ask": ("lmstack.qa.ask:ask",
            "answer from an index: retrieve, rerank, then read a span or generate with citations"),
    "train-reader": ("lmstack.qa.reader:train_reader", "train an extractive QA reader on SQuAD-format data"),
    "qa-eval": ("lmstack.qa.reader:qa_eval", "exact match and F1 of a reader (SQuAD v2 / CMRC2018 scoring)"),
    "train-multiple-choice": ("lmstack.qa.choice:train_multiple_choice",
                              "train an encoder with a multiple-choice head"),
    "choice-eval": ("lmstack.qa.choice:choice_eval",
                    "multiple-choice accuracy: a choice head, or a decoder's option log-likelihood"),
    "cloze": ("lmstack.qa.cloze:cloze", "prompt-based QA: which word best fills a {mask} slot, by an MLM"),
    "train-dense": ("lmstack.retrieval.commands:train_dense", "train a dual encoder (in-batch + hard negatives)"),
    "train-rerank": ("lmstack.retrieval.commands:train_rerank", "train a cross-encoder reranker"),
    "train-reward": ("lmstack.align.reward_commands:train_reward",
                     "train a reward model on preference pairs (Bradley-Terry; decoder or encoder)"),
    "reward-eval": ("lmstack.align.reward_commands:reward_eval",
                    "pairwise accuracy of a reward model, and its reward-margin histogram"),
    "dpo": ("lmstack.align.dpo_command:dpo",
            "align on preference pairs without a reward model: DPO, IPO, cDPO, hinge, SimPO, ORPO, KTO"),
    "ppo": ("lmstack.align.rl_commands:ppo", "RLHF as in InstructGPT: PPO against a reward, KL to the reference"),
    "grpo": ("lmstack.align.rl_commands:grpo", "GRPO: group-normalised rewards of sampled answers, no value model"),
    "train-classifier": ("lmstack.eval.attribute_classifier:train_classifier",
                         "train an attribute classifier (sentiment, politeness, topic)"),
    "classify": ("lmstack.eval.attribute_classifier:classify",
                 "an attribute classifier's held-out accuracy, or labels of texts"),
    "train-control": ("lmstack.adapt.control_codes:train_control",
                      "fine-tune on attribute texts behind control codes (CTRL), or a DExperts expert"),
    "perplexity": ("lmstack.eval.perplexity:perplexity", "cross-entropy, perplexity and bits per byte of text files"),
    "evaluate": ("lmstack.eval.evaluate_command:evaluate",
                 "few-shot, chain-of-thought, self-consistency evaluation of a model or an OpenAI-compatible server"),
    "score": ("lmstack.eval.score_command:score",
              "BLEU / chrF / TER / ROUGE / EM of existing outputs against references, no model"),
    "inspect neighbours": ("lmstack.interpret.vector_commands:inspect_neighbours",
                           "nearest neighbours by cosine of words in a model's embeddings or a layer"),
    "inspect analogies": ("lmstack.interpret.vector_commands:inspect_analogies",
                          "analogy accuracy per section and coverage (3CosAdd / 3CosMul, questions-words.txt / CA8)"),
    "inspect projection": ("lmstack.interpret.vector_commands:inspect_projection",
                           "2-D PCA / t-SNE plot of chosen words' vectors"),
    "inspect attention": ("lmstack.interpret.attention_commands:inspect_attention",
                          "attention maps of a text: PNG grid per layer, HTML viewer, per-head statistics"),
    "inspect logit-lens": ("lmstack.interpret.attention_commands:inspect_logit_lens",
                           "logit lens: what each layer predicts through the final norm and LM head"),
    "scaling sweep": ("lmstack.scaling.commands:scaling_sweep",
                      "train a grid of model sizes x token budgets and collect runs.jsonl for a scaling-law fit"),
    "scaling fit": ("lmstack.scaling.commands:scaling_fit",
                    "fit L(N, D) (Chinchilla approach 3, Huber) and L(C) to runs, bootstrap intervals, backtest"),
    "scaling plan": ("lmstack.scaling.commands:scaling_plan",
                     "compute-optimal N and D for a FLOP budget, from your fit or the Chinchilla / Epoch constants"),
    "demo": ("lmstack.demo:demo", "the whole pipeline on the built-in corpus, with a report"),
    "demo-align": ("lmstack.demo_align:demo_align",
                   "reward model, DPO, PPO and GRPO on the demo's SFT model, with a report"),
}

# Old names kept working: alias -> command.
ALIASES: dict[str, str] = {"eval": "perplexity"}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    as_json = "--json" in argv
    argv = [a for a in argv if a not in ("--debug", "--json")]
    if argv and argv[0] in ALIASES:
        argv[0] = ALIASES[argv[0]]
    if len(argv) > 1 and f"{argv[0]} {argv[1]}" in COMMANDS:  # a command of two words: `lmstack scaling fit`
        argv[:2] = [f"{argv[0]} {argv[1]}"]
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        _usage(argv[0] if argv and argv[0] not in ("-h", "--help") else None)
    name, rest = argv[0], argv[1:]
    try:
        fn = _resolve(COMMANDS[name][0])
        kwargs = parse_args(fn, rest, prog=f"lmstack {name}")
        # With --json, stdout carries exactly one object: whatever the command prints goes to stderr.
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            result = fn(**kwargs)
    except LmstackError as e:
        if debug:
            raise
        print(f"lmstack {name}: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"lmstack {name}: interrupted", file=sys.stderr)
        sys.exit(130)
    if result is not None:
        emit(result, as_json)


def emit(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, ensure_ascii=False, default=str))
        return
    for key, value in result.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False, default=str)
        print(f"{key}: {value}")


def _usage(unknown: str | None) -> None:
    lines = ["usage: lmstack <command> [args] [--json] [--debug]", "", "commands:"]
    width = max(map(len, COMMANDS)) + 1
    lines += [f"  {n:<{width}} {summary}" for n, (_, summary) in COMMANDS.items()]
    lines += ["", "aliases: " + ", ".join(f"{old} = {new}" for old, new in ALIASES.items())]
    if unknown:
        subs = [n.split(" ", 1)[1] for n in COMMANDS if n.startswith(unknown + " ")]
        what = (f"'{unknown}' needs a sub-command: one of {', '.join(subs)}" if subs  # `lmstack scaling` alone
                else f"unknown command '{unknown}'")
        print(f"lmstack: error: {what}\n" + "\n".join(lines), file=sys.stderr)
        sys.exit(2)
    print("\n".join(lines))
    sys.exit(0)


def _resolve(target: str) -> Callable[..., Any]:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def parse_args(fn: Callable[..., Any], argv: list[str], prog: str) -> dict[str, Any]:
    """Build an argparse parser from ``fn``'s signature and parse ``argv`` into its keyword arguments."""
    hints = typing.get_type_hints(fn)
    docs = _param_docs(fn)
    parser = argparse.ArgumentParser(prog=prog, description=(inspect.getdoc(fn) or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    config_param, positional = None, set()
    for p in inspect.signature(fn).parameters.values():
        hint = hints.get(p.name, str)
        base = strip_optional(hint)
        if dataclasses.is_dataclass(base):
            config_param = (p.name, base)
            parser.add_argument("--config", type=Path, help="YAML file filling the config; --key value overrides it")
            parser.epilog = "config keys (--key value, nested as --section.key value):\n" + "\n".join(
                f"  --{key} {','.join(map(str, value)) if isinstance(value, list) else value}"
                for key, value in _flat_defaults(base))
            continue
        flag = "--" + p.name.replace("_", "-")
        many = typing.get_origin(base) in (list, tuple)
        kw: dict[str, Any] = {"help": docs.get(p.name, "")}
        if p.default is inspect.Parameter.empty and p.kind is inspect.Parameter.KEYWORD_ONLY:
            parser.add_argument(flag, dest=p.name, nargs="+" if many else None, required=True, **kw)
        elif p.default is inspect.Parameter.empty:
            positional.add(p.name)
            parser.add_argument(p.name, nargs="+" if many else None, **kw)
        elif base is bool:
            parser.add_argument(flag, dest=p.name, action=argparse.BooleanOptionalAction, default=p.default, **kw)
        else:
            parser.add_argument(flag, dest=p.name, nargs="+" if many else None, default=p.default,
                                metavar=p.name.upper(), **{**kw, "help": f"{kw['help']} (default: {p.default})"})
    args, extra = parser.parse_known_args(argv) if config_param else (parser.parse_args(argv), [])
    kwargs = vars(args)
    flags = _overrides(extra)
    for name, value in [*kwargs.items(), *flags.items()]:
        label = name if name in positional else f"--{name.replace('_', '-') if name in kwargs else name}"
        check_utf8(value, label)
    for name, value in list(kwargs.items()):
        if name != "config" and value is not None and value != inspect.signature(fn).parameters[name].default:
            kwargs[name] = coerce(value, hints.get(name, str), f"--{name}")
        if name == "seed" and isinstance(kwargs[name], int):
            check_seed(kwargs[name], "--seed")
    if config_param:
        name, cls = config_param
        values = load_yaml(kwargs["config"]) if kwargs.get("config") else {}
        source = str(kwargs.pop("config") or "command line")
        kwargs[name] = build(cls, values, source, flags=nest(flags))
    return kwargs


def check_utf8(value: Any, label: str) -> None:
    """Refuse an argument that is not valid UTF-8 (Python hands such bytes over as lone surrogates, which
    tokenizers, JSON files and terminals cannot take), naming it; lists are checked item by item."""
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(item, (str, Path)):
            text = str(item)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                code = ord(text[e.start])  # 0xDC80-0xDCFF: the byte (code - 0xDC00), escaped by surrogateescape
                what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"lone surrogate U+{code:04X}"
                raise LmstackError(f"{label}: the argument is not valid UTF-8 ({what} at character {e.start}); "
                                   "lmstack takes text and file names as UTF-8") from None


def _flat_defaults(cls: type, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, default) for every field of a config dataclass, nested sections flattened."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            out += _flat_defaults(type(default), f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, str(default) if isinstance(default, Path) else default))
    return out


def _overrides(extra: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    it = iter(extra)
    for token in it:
        if not token.startswith("--"):
            raise LmstackError(f"unexpected argument '{token}' (overrides are --key value)")
        key, eq, value = token[2:].partition("=")
        if not eq:
            value = next(it, None)
            if value is None:
                raise LmstackError(f"--{key} needs a value")
        out[key.replace("-", "_")] = value
    return out


def _param_docs(fn: Callable[..., Any]) -> dict[str, str]:
    """Read ``name: text`` lines from the docstring's Args section."""
    doc = inspect.getdoc(fn) or ""
    out, in_args = {}, False
    for line in doc.splitlines():
        if line.strip() == "Args:":
            in_args = True
        elif in_args and ":" in line and line.startswith("    ") and not line.startswith("        "):
            key, _, text = line.strip().partition(":")
            out[key.strip()] = text.strip()
    return out
