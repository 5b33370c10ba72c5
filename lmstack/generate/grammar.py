"""Structured outputs: constrained decoding by a JSON schema or a Lark grammar (OpenAI's ``response_format``).

Why llguidance (Microsoft; behind vLLM's, llama.cpp's and SGLang's structured outputs): a CPU wheel with no
dependencies, better JSON-schema coverage and compile speed than outlines-core (its Earley parser over a token trie
masks a step in tens of microseconds here), while xgrammar pulls triton and transformers in at install.

A ``Grammar`` is compiled once per (schema, tokenizer, end tokens) and shared (read-only) by every sequence that uses
it; ``Grammar.constraint()`` gives one sequence its own state. Each step, ``Constraint.mask`` sets the score of every
token the grammar forbids to -inf and ``Constraint.advance`` records the token picked. JSON is compact (no whitespace
outside strings, "," and ":" separators), so a small model cannot wander in whitespace; once the value is complete
only an end token (eos, a chat turn's end) is allowed, so the output ends right after it. Running out of tokens
first is the caller's business (finish reason "length").
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Collection

import llguidance
import numpy as np
import torch
from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask

from lmstack.errors import LmstackError
from lmstack.text.tokenizer import Tokenizer

JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}
ANY_OBJECT = {"type": "object"}  # OpenAI's json_object mode
CACHED_GRAMMARS = 64  # compiled grammars kept per tokenizer (least recently used dropped first)
_UNIMPLEMENTED = re.compile(r'Unimplemented keys: \[(.*?)\]')


class _TokenizerEntry:
    """What a tokenizer's grammars share: llguidance's view of its vocabulary (~1 s to build for a large
    vocabulary) and an LRU of compiled grammars."""

    def __init__(self, tokenizer: Tokenizer, eos: int):
        self.ll = llguidance.LLTokenizer(tokenizer.backend.to_str(), n_vocab=tokenizer.vocab_size, eos_token=[eos])
        self.grammars: OrderedDict[tuple, Grammar] = OrderedDict()


_entries: weakref.WeakKeyDictionary[Tokenizer, dict[int, _TokenizerEntry]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


class Grammar:
    """A compiled grammar over one tokenizer's vocabulary, read-only and safe to share between threads."""

    def __init__(self, matcher: llguidance.LLMatcher, eos: int, end_ids: frozenset[int], n_vocab: int):
        self._matcher, self._lock = matcher, threading.Lock()
        self.eos, self.end_ids, self.n_vocab = eos, end_ids, n_vocab
        self.end_list = sorted(end_ids)

    @classmethod
    def from_json_schema(cls, schema: dict | None, tokenizer: Tokenizer, end_ids: Collection[int], *,
                         where: str = "response_format") -> Grammar:
        """Outputs that are JSON valid under ``schema`` (JSON Schema draft 2020-12, as llguidance implements it);
        None: any JSON object. A schema llguidance cannot compile is an error naming the keyword (or the problem)
        after ``where`` (a field or a file)."""
        schema = ANY_OBJECT if schema is None else schema
        if not isinstance(schema, dict):
            raise LmstackError(f"{where}: the schema must be a JSON object, got {type(schema).__name__}")
        text = json.dumps(schema, ensure_ascii=False)  # key order kept: properties come out in schema order
        return _compiled(tokenizer, end_ids, ("json_schema", text), where,
                         lambda: llguidance.LLMatcher.grammar_from_json_schema(text, defaults=JSON_OPTIONS))

    @classmethod
    def from_lark(cls, text: str, tokenizer: Tokenizer, end_ids: Collection[int], *,
                  where: str = "grammar") -> Grammar:
        """Outputs in the language of a Lark grammar (llguidance's dialect: ``start: ...``, regex terminals,
        ``%json {...}`` for an embedded schema)."""
        build = lambda: llguidance.LLMatcher.grammar_from_lark(text)  # noqa: E731
        return _compiled(tokenizer, end_ids, ("lark", text), where, build)

    def constraint(self) -> Constraint:
        """A fresh state for one sequence."""
        with self._lock:
            return Constraint(self, self._matcher.deep_copy())


class Constraint:
    """One sequence's place in a grammar: which tokens may come next."""

    def __init__(self, grammar: Grammar, matcher: llguidance.LLMatcher):
        self.grammar, self._matcher = grammar, matcher
        self._bitmask = allocate_token_bitmask(1, grammar.n_vocab)
        self._allowed: torch.Tensor | None = None  # [n_vocab] bool, for the current position

    def allowed(self) -> torch.Tensor:
        """[n_vocab] bool: the tokens the grammar allows next (every end token stands for llguidance's eos)."""
        if self._allowed is None:
            fill_next_token_bitmask(self._matcher, self._bitmask)  # bit i of int32 word w: token 32 * w + i
            if self._matcher.is_error():  # a parser limit hit, say: no token is allowed
                raise LmstackError(f"the output's grammar failed: {_one_line(self._matcher.get_error())}")
            words = self._bitmask.astype("<i4", copy=False).view(np.uint8)
            bits = np.unpackbits(words, bitorder="little")[:self.grammar.n_vocab].view(bool)
            end = bool(bits[self.grammar.eos])
            bits[self.grammar.eos] = False
            bits[self.grammar.end_list] = end
            self._allowed = torch.from_numpy(bits)
        return self._allowed

    def mask(self, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` ([1, V] or [V]) with every token the grammar forbids at -inf; ids past the tokenizer's
        vocabulary (a model's padded embedding rows) are forbidden."""
        return scores.masked_fill(~self.within(scores.size(-1)).to(scores.device), -float("inf"))

    def within(self, width: int) -> torch.Tensor:
        """[width] bool: ``allowed()`` cut or padded (with False) to a model's logits width."""
        allowed = self.allowed()
        if width == allowed.numel():
            return allowed
        out = torch.zeros(width, dtype=torch.bool)
        n = min(width, allowed.numel())
        out[:n] = allowed[:n]
        return out

    def advance(self, token: int) -> None:
        """Move past ``token``; a token the grammar does not allow here is an error (and leaves the state as is)."""
        token = int(token)
        ok = 0 <= token < self.grammar.n_vocab and bool(self.allowed()[token])
        if not ok:
            raise LmstackError(f"token {token} is not allowed by the output's grammar at this point")
        consumed = self.grammar.eos if token in self.grammar.end_ids else token
        if not self._matcher.consume_token(consumed):
            raise LmstackError(f"token {token} is not allowed by the output's grammar ({self._matcher.get_error()})")
        self._allowed = None

    @property
    def accepting(self) -> bool:
        """The output is complete: nothing but an end token may come now (or one already has)."""
        return self._matcher.is_stopped() and not self._matcher.is_error()


def mask_rows(scores: torch.Tensor, constraints: list[Constraint | None]) -> torch.Tensor:
    """``scores`` [B, V] with each constrained row masked as ``Constraint.mask`` does (None: a free row)."""
    if all(c is None for c in constraints):
        return scores
    allowed = torch.ones(scores.shape, dtype=torch.bool)
    for row, c in enumerate(constraints):
        if c is not None:
            allowed[row] = c.within(scores.size(-1))
    return scores.masked_fill(~allowed.to(scores.device), -float("inf"))


def response_format_grammar(response_format: dict, tokenizer: Tokenizer, end_ids: Collection[int]) -> Grammar | None:
    """The grammar an OpenAI ``response_format`` asks for: ``{"type": "text"}`` none; ``{"type": "json_object"}``
    any JSON object; ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}, "strict": bool}}`` the
    schema (enforced whatever ``strict`` says). A malformed shape is an error naming the field."""
    if not isinstance(response_format, dict):
        raise LmstackError(f"response_format: expected an object, got {type(response_format).__name__}")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return Grammar.from_json_schema(None, tokenizer, end_ids)
    if kind != "json_schema":
        raise LmstackError(f"response_format.type: expected 'text', 'json_object' or 'json_schema', got {kind!r}")
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        raise LmstackError("response_format.json_schema: expected an object with name and schema, got "
                           f"{type(spec).__name__ if spec is not None else 'nothing'}")
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        raise LmstackError(f"response_format.json_schema.name: expected a non-empty string, got {spec.get('name')!r}")
    if not isinstance(spec.get("strict", False), bool | None):
        raise LmstackError(f"response_format.json_schema.strict: expected true or false, got {spec['strict']!r}")
    schema = spec.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise LmstackError(f"response_format.json_schema.schema: expected a JSON object, got {type(schema).__name__}")
    return Grammar.from_json_schema(schema, tokenizer, end_ids, where="response_format.json_schema.schema")


def _compiled(tokenizer: Tokenizer, end_ids: Collection[int], key: tuple[str, str], where: str,
              build: Callable[[], str]) -> Grammar:
    """The grammar for ``key`` over ``tokenizer``, from the cache or compiled (and checked) now."""
    ends = frozenset(int(i) for i in end_ids if 0 <= int(i) < tokenizer.vocab_size)
    eos = tokenizer.eos_id if tokenizer.eos_id is not None else min(ends, default=None)
    if eos is None:
        raise LmstackError("structured outputs need an end token: the tokenizer has no eos and no turn end was given")
    ends = ends or frozenset({eos})
    with _lock:
        entry = _entries.setdefault(tokenizer, {}).get(eos)
        if entry is None:
            entry = _entries[tokenizer][eos] = _TokenizerEntry(tokenizer, eos)
        grammar = entry.grammars.get((key, ends))
        if grammar is not None:
            entry.grammars.move_to_end((key, ends))
            return grammar
    grammar = Grammar(_matcher(entry.ll, build, where), eos, ends, entry.ll.vocab_size)
    with _lock:
        entry.grammars[(key, ends)] = grammar
        while len(entry.grammars) > CACHED_GRAMMARS:
            entry.grammars.popitem(last=False)
    return grammar


def _matcher(ll: llguidance.LLTokenizer, build: Callable[[], str], where: str) -> llguidance.LLMatcher:
    try:
        text = build()
    except ValueError as e:
        raise LmstackError(f"{where}: {_one_line(str(e))}") from None
    failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(text, ll)
    if failed:
        raise LmstackError(f"{where}: {_explain(messages[0] if messages else 'the grammar does not compile')}")
    matcher = llguidance.LLMatcher(ll, text, log_level=0)
    if matcher.is_error():
        raise LmstackError(f"{where}: {_explain(matcher.get_error())}")
    return matcher


def _explain(message: str) -> str:
    """llguidance's compile error as one line; an unimplemented keyword is named as such."""
    found = _UNIMPLEMENTED.search(message)
    if found:
        names = ", ".join(f"'{json.loads(n)}'" for n in found.group(1).split(", ") if n)
        return f"the schema uses {names}, which structured outputs do not support"
    return f"cannot be used for structured outputs: {_one_line(message)}"


def _one_line(message: str) -> str:
    return " ".join(message.split())
