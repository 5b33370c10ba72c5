"""Answer extraction: lm-evaluation-harness's filter pipelines over a sample's K outputs.

A task's ``filter_list`` entry names a pipeline of steps, as lm-eval's YAML writes them
(``{"function": "regex", "regex_pattern": ..., "group_select": 0, "fallback": "[invalid]"}``, then
``{"function": "take_first"}``). Steps that map each output (``regex``, ``lowercase``, ``uppercase``, ``strip``,
``remove_whitespace``, ``last_number``) keep the list of K; ``take_first`` and ``majority_vote`` reduce it to one.
The pipeline's answer is the first item left (lm-eval ends every pipeline with ``take_first`` too).

Semantics are lm-eval's (``lm_eval/filters/{extraction,selection,transformation}.py``): ``regex`` takes
``re.findall(pattern, output)[group_select]`` (negative from the end), from a match with several groups the first
non-empty one, stripped; no match gives ``fallback``. Where lm-eval would raise (``group_select`` past the matches,
a match whose groups are all empty) the answer is ``fallback`` too: a sample whose filter finds nothing is scored
wrong and counted, never a crash. ``majority_vote`` is ``Counter.most_common(1)``: ties go to the answer seen
first. ``remove_whitespace`` drops one leading space (lm-eval's); ``strip`` removes surrounding whitespace.
``last_number`` is GSM8K's flexible extract.
"""

from __future__ import annotations

import inspect
import re
from collections import Counter
from collections.abc import Callable

from lmstack.errors import LmstackError

INVALID = "[invalid]"
# lm-eval's gsm8k.yaml / gsm8k-cot.yaml (filters and exact_match options), verbatim.
GSM8K_STRICT = r"#### (\-?[0-9\.\,]+)"
GSM8K_COT_STRICT = r"The answer is (\-?[0-9\.\,]+)."
GSM8K_FLEXIBLE = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
GSM8K_EXACT_MATCH = {"ignore_case": True, "ignore_punctuation": False,
                     "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}


def regex_extract(text: str, pattern: re.Pattern, group_select: int = 0, fallback: str = INVALID) -> str:
    """lm-eval's ``RegexFilter`` on one output."""
    matches = pattern.findall(text)
    if not matches or not -len(matches) <= group_select < len(matches):
        return fallback
    match = matches[group_select]
    if isinstance(match, tuple):
        match = next((m for m in match if m), None)
        if match is None:
            return fallback
    return match.strip()


def _regex(regex_pattern: str = GSM8K_STRICT, group_select: int = 0, fallback: str = INVALID) -> Callable:
    try:
        pattern = re.compile(regex_pattern)
    except re.error as e:
        raise LmstackError(f"filter regex: regex_pattern {regex_pattern!r} does not compile ({e})") from None
    if not isinstance(group_select, int) or isinstance(group_select, bool):
        raise LmstackError(f"filter regex: group_select must be an integer (got {group_select!r})")
    return lambda outputs: [regex_extract(o, pattern, group_select, str(fallback)) for o in outputs]


def _last_number(fallback: str = INVALID) -> Callable:
    return _regex(GSM8K_FLEXIBLE, -1, fallback)


def _each(fn: Callable[[str], str]) -> Callable[[], Callable]:
    return lambda: (lambda outputs: [fn(o) for o in outputs])


def _take_first() -> Callable:
    return lambda outputs: outputs[:1]


def _majority_vote() -> Callable:
    return lambda outputs: [Counter(outputs).most_common(1)[0][0]] if outputs else []


# name -> builder(**step options) -> step(list of outputs) -> list of outputs
STEPS: dict[str, Callable[..., Callable[[list[str]], list[str]]]] = {
    "regex": _regex,
    "last_number": _last_number,
    "take_first": _take_first,
    "majority_vote": _majority_vote,
    "lowercase": _each(str.lower),
    "uppercase": _each(str.upper),
    "strip": _each(str.strip),
    "remove_whitespace": _each(lambda s: s[1:] if s.startswith(" ") else s),
}


def build_filter(steps: list[dict], where: str = "filter") -> Callable[[list[str]], str]:
    """The pipeline of lm-eval filter ``steps`` as one function: a sample's K outputs -> its answer. Steps and
    their options are checked here (``where`` names the task field in messages), before any output exists."""
    if not isinstance(steps, list) or not steps:
        raise LmstackError(f"{where}: a filter is a non-empty list of steps ({{function: ...}})")
    built = []
    for i, step in enumerate(steps):
        label = f"{where}[{i}]"
        if not isinstance(step, dict) or "function" not in step:
            raise LmstackError(f"{label}: a step is a mapping with a 'function' key (one of {', '.join(STEPS)})")
        options = {k: v for k, v in step.items() if k != "function"}
        name = step["function"]
        if name not in STEPS:
            raise LmstackError(f"{label}: unknown filter function {name!r} (valid: {', '.join(STEPS)})")
        valid = list(inspect.signature(STEPS[name]).parameters)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise LmstackError(f"{label}: {name} has no option(s) {', '.join(unknown)} "
                               f"(valid: {', '.join(valid) or 'none'})")
        built.append(STEPS[name](**options))

    def apply(outputs: list[str]) -> str:
        values = list(outputs)
        for fn in built:
            values = fn(values)
        return values[0] if values else INVALID

    return apply
