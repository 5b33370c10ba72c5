"""Reward functions for PPO and GRPO: ``(records: list[PromptRecord], replies: list[str]) -> list[float]``, one
number per sampled reply (its prompt's record carries what a rule checks: ``meta["answer"]``, ``meta["lang"]``).

``load_reward(spec, ...)`` reads the command line's ``--reward``:

- ``rules:NAME[,NAME...]``: the sum of built-in rules, each 0 or 1. ``answer``: the reply's last number equals
  ``meta["answer"]`` (the synthetic arithmetic); ``format``: a non-empty reply without chat markup that ends a
  sentence (or with a number); ``correct``, ``language``, ``polite``, ``chosen``: the synthetic world's judge
  (``lmstack.data.synth.preferences.judge``: right facts, the asked language, politeness, all three).
- a reward model directory (``lmstack train-reward``): its score of (prompt, reply). A decoder reward model
  must share the policy's tokenizer; an encoder reads the text with its own.
- ``path/to/file.py:function`` or ``package.module:function``: a Python function called as
  ``function(prompts, replies, metas)`` (the prompts' messages, the reply texts, the prompts' other fields)
  returning one number per reply.

Every reward is checked (``checked``): a function that raises, or gives NaN, inf or a non-number, is one
``LmstackError`` naming the function, the prompt's ``file:line`` and the value.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from lmstack.align.reward_model import RewardScorer
from lmstack.data.preferences import PromptRecord
from lmstack.data.synth.preferences import judge as synth_judge
from lmstack.errors import LmstackError
from lmstack.text.tokenizer import Tokenizer

RewardFn = Callable[[list[PromptRecord], list[str]], list[float]]
Judge = Callable[[dict, str], dict[str, bool]]

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
SENTENCE_END = tuple(".!?。！？") + tuple("0123456789")


def last_number(reply: str) -> float | None:
    """The last number written in ``reply`` (None if there is none)."""
    found = NUMBER.findall(reply.replace(",", ""))
    return float(found[-1]) if found else None


def answer_rule(meta: dict, reply: str) -> bool:
    """The reply's last number equals the record's ``answer``."""
    if "answer" not in meta:
        return False
    try:
        expected = float(str(meta["answer"]).replace(",", ""))
    except ValueError:
        return False
    found = last_number(reply)
    return found is not None and math.isclose(found, expected, rel_tol=0, abs_tol=1e-9)


def format_rule(reply: str) -> bool:
    """A non-empty reply, without chat markup, that ends a sentence or with a number."""
    reply = reply.strip()
    return bool(reply) and "<|" not in reply and reply.endswith(SENTENCE_END)


JUDGED = {"correct": "correct", "language": "right_language", "polite": "polite", "chosen": "chosen_kind"}
RULES = ("answer", "format", *JUDGED)


def rule_reward(names: list[str], judge: Judge = synth_judge) -> RewardFn:
    """The sum of the named rules (each 0 or 1) for every reply; see the module docstring."""
    unknown = [n for n in names if n not in RULES]
    if unknown or not names:
        raise LmstackError(f"reward rules: {', '.join(unknown) or '(none)'} unknown; choose from {', '.join(RULES)}")
    judged = any(n in JUDGED for n in names)

    def reward(records: list[PromptRecord], replies: list[str]) -> list[float]:
        out = []
        for record, reply in zip(records, replies):
            try:
                verdict = judge(record.meta, reply) if judged else {}
            except LmstackError as e:
                raise LmstackError(f"{record.where}: {e}") from None
            out.append(float(sum(answer_rule(record.meta, reply) if n == "answer" else
                                 format_rule(reply) if n == "format" else bool(verdict[JUDGED[n]])
                                 for n in names)))
        return out
    return reward


def python_reward(spec: str) -> tuple[RewardFn, str]:
    """The function ``spec`` names ("file.py:function" or "package.module:function"), as a reward."""
    target, _, name = spec.rpartition(":")
    if not target or not name:
        raise LmstackError(f"reward {spec!r}: expected rules:NAME, a reward model directory, file.py:function or "
                           "package.module:function")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise LmstackError(f"reward {spec!r}: {path} not found")
            module_spec = importlib.util.spec_from_file_location(f"lmstack_reward_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_spec.name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except LmstackError:
        raise
    except Exception as e:
        raise LmstackError(f"reward {spec!r}: importing {target} failed: {type(e).__name__}: {e}") from e
    fn = getattr(module, name, None)
    if not callable(fn):
        raise LmstackError(f"reward {spec!r}: {target} has no function {name!r}")

    def reward(records: list[PromptRecord], replies: list[str]) -> list[float]:
        return fn([r.prompt for r in records], replies, [r.meta for r in records])
    return reward, f"{target}:{name}"


def scorer_reward(scorer, tokenizer: Tokenizer, where: str) -> RewardFn:
    """A reward model's score (``RewardScorer`` interface: ``kind``, ``tokenizer``, ``score(prompts, replies)``);
    a decoder reward model read with another tokenizer than the policy's is refused."""
    if scorer.kind == "decoder" and scorer.tokenizer.sha256 != tokenizer.sha256:
        raise LmstackError(f"{where}: this decoder reward model's tokenizer differs from the policy's "
                           "(tokenizer.json sha256); train it from the policy's base, or use an encoder reward model")

    def reward(records: list[PromptRecord], replies: list[str]) -> list[float]:
        with torch.no_grad():
            return scorer.score([r.prompt for r in records], replies).float().tolist()
    return reward


def load_reward(spec: str, tokenizer: Tokenizer, device: str | torch.device = "cpu",
                judge: Judge = synth_judge) -> RewardFn:
    """The checked reward ``spec`` names (see the module docstring)."""
    if spec.startswith("rules:"):
        return checked(rule_reward([n.strip() for n in spec[len("rules:"):].split(",") if n.strip()], judge), spec)
    if Path(spec).is_dir():
        return checked(scorer_reward(RewardScorer.load(Path(spec), device), tokenizer, spec), spec)
    fn, name = python_reward(spec)
    return checked(fn, name)


def checked(fn: RewardFn, name: str) -> RewardFn:
    """``fn`` with its output checked: one finite number per reply; an exception or a bad value is one
    ``LmstackError`` naming ``name``, the prompt's ``where`` and the value."""

    def call(records: list[PromptRecord], replies: list[str]):
        try:
            return fn(records, replies)
        except LmstackError:
            raise
        except Exception as e:
            if len(records) > 1:  # find the prompt it fails on
                for r, reply in zip(records, replies):
                    call([r], [reply])
            raise LmstackError(f"reward {name} raised {type(e).__name__}: {e} (prompt {records[0].where})") from e

    def reward(records: list[PromptRecord], replies: list[str]) -> list[float]:
        values = call(records, replies)
        values = values.tolist() if isinstance(values, torch.Tensor) else values
        try:
            values = list(values)
        except TypeError:
            raise LmstackError(f"reward {name} returned {values!r}; expected a list of numbers") from None
        if len(values) != len(records):
            raise LmstackError(f"reward {name} returned {len(values)} values for {len(records)} replies "
                               f"(prompts {records[0].where} ...)")
        out = []
        for r, v in zip(records, values):
            number = None if isinstance(v, (str, bytes)) else _float(v)
            if number is None or not math.isfinite(number):
                raise LmstackError(f"reward {name} gave {v!r} for the prompt at {r.where}; expected a finite number")
            out.append(number)
        return out
    return reward


def _float(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None
