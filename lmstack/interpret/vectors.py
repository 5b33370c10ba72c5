"""Word vectors from a model directory: one unit vector per word, and nearest neighbours by cosine.

How a word becomes one vector (the choices, so that a result can be reproduced):

- **Tokens.** A word is encoded as it appears inside a sentence: with a leading space unless it holds Han
  characters (Chinese is written without spaces), because a byte-level BPE tokenizer gives " Mira" one token but
  "Mira" at a text's start two ("M", "ira"). An underscore stands for a space, word2vec's phrase convention
  ("Marlow_Bay" in questions-phrases.txt); a word may also hold spaces ("Marlow Bay"). Tokens that decode to
  whitespace only (a character-level tokenizer's space) are dropped.
- **Input embeddings** (``layer=None``): the mean of the word's tokens' rows of the token-embedding matrix
  (``tok_emb``: the decoder's, or the BERT encoder's word embeddings). A one-token word is its row.
- **A contextual layer** ``L`` (1 .. n_layer): the hidden state after block ``L`` (the residual stream; for a
  decoder before its final norm), averaged over the word's tokens, then over its contexts. Contexts are the
  lines of a text file that contain the word (at most ``max_contexts`` per word, the first ones; each line cut
  to the model's context), and, for a word no line contains or with no file, the word alone in its
  mid-sentence form.

Every vector is then scaled to unit length (a zero vector stays zero), so a dot product is a cosine. The
vocabulary (the words that may answer a query) is an ordered list; ``restrict(n)`` keeps its first ``n`` words
as gensim's ``restrict_vocab`` does. ``token_words`` lists a tokenizer's whole-word tokens as candidates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lmstack.errors import LmstackError
from lmstack.model.hf import load_model
from lmstack.text.han import has_han
from lmstack.text.tokenizer import Tokenizer


@dataclass
class WordVectors:
    """Words and their unit vectors ``vectors[i]`` (float32, [n, dim]); ``index`` maps a word to its first row."""

    words: list[str]
    vectors: np.ndarray
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        v = np.asarray(self.vectors, dtype=np.float32)
        if v.ndim != 2 or len(v) != len(self.words):
            raise ValueError(f"{len(self.words)} words but vectors of shape {v.shape}")
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        self.vectors = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
        self.index = {}
        for i, w in enumerate(self.words):
            self.index.setdefault(w, i)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def restrict(self, n: int | None) -> WordVectors:
        """The first ``n`` words (all with None), as gensim's ``restrict_vocab``."""
        return self if n is None or n >= len(self) else WordVectors(self.words[:n], self.vectors[:n])

    def vector(self, word: str) -> np.ndarray:
        if word not in self.index:
            raise LmstackError(f"'{word}' is not in the vocabulary of {len(self)} words")
        return self.vectors[self.index[word]]

    def neighbours(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` words of highest cosine with ``word``, the word itself (every row of it) excluded."""
        cos = self.vectors @ self.vector(word)
        order = [i for i in np.argsort(-cos, kind="stable") if self.words[i] != word]
        return [(self.words[i], float(cos[i])) for i in order[:k]]


def word_ids(tokenizer: Tokenizer, word: str) -> list[int]:
    """The ids of ``word`` as it appears mid-sentence (see the module docstring); an error when it has none."""
    text = word.replace("_", " ").strip()
    ids = tokenizer.encode(text if has_han(text) else " " + text, specials=False)
    kept = [i for i in ids if tokenizer.decode([i]).strip()]
    if not text or not kept:
        raise LmstackError(f"word {word!r}: encodes to no token (give a non-blank word)")
    return kept


def has_tokens(tokenizer: Tokenizer, word: str) -> bool:
    """Whether ``word`` encodes to at least one token (else it has no vector: a question with it is not covered)."""
    try:
        return bool(word_ids(tokenizer, word))
    except LmstackError:
        return False


def token_words(tokenizer: Tokenizer) -> list[str]:
    """The tokenizer's tokens that are whole words, in id order: a space then letters (" Mira"), or Han
    characters only ("贝尔港"); returned without the space."""
    words = []
    for i in range(tokenizer.vocab_size):
        text = tokenizer.decode([i])
        word = text.strip()
        if word.isalpha() and (has_han(word) if not text.startswith(" ") else len(text) == len(word) + 1):
            words.append(word)
    return list(dict.fromkeys(words))


def body_of(model: nn.Module) -> nn.Module:
    """The module holding the token embeddings and the blocks (a decoder, an encoder, or the body under a head)."""
    for module in model.modules():
        if isinstance(getattr(module, "tok_emb", None), nn.Embedding) and hasattr(module, "blocks"):
            return module
    raise LmstackError(f"{type(model).__name__}: no token embeddings and blocks to read word vectors from")


def load(path: str | Path) -> tuple[nn.Module, Tokenizer]:
    """A model directory's body (on CPU, in eval mode) and its tokenizer."""
    path = Path(path)
    model = load_model(path)
    if not (path / "tokenizer.json").is_file():
        raise LmstackError(f"{path}: no tokenizer.json, so words cannot be turned into tokens")
    return body_of(model).eval(), Tokenizer.load(path)


def check_layer(body: nn.Module, layer: int | None) -> None:
    n = len(body.blocks)
    if layer is not None and not 1 <= layer <= n:
        raise LmstackError(f"--layer {layer}: the model has blocks 1 to {n} (leave --layer out for the input "
                           "embeddings)")


def word_vectors(body: nn.Module, tokenizer: Tokenizer, words: Sequence[str], layer: int | None = None,
                 contexts: Iterable[str] = (), max_contexts: int = 20) -> WordVectors:
    """Vectors of ``words`` (in order) from ``body``'s input embeddings or its block ``layer`` (1-based), formed as
    the module docstring says; ``contexts`` are the sentences a contextual vector averages over."""
    check_layer(body, layer)
    words = list(words)
    if layer is None:
        table = body.tok_emb.weight.detach().float()
        rows = [table[word_ids(tokenizer, w)].mean(0).numpy() for w in words]
        return WordVectors(words, np.stack(rows) if rows else np.zeros((0, table.size(1)), np.float32))
    lines = [line.strip() for line in contexts if line.strip()]
    return WordVectors(words, np.stack([_contextual(body, tokenizer, w, layer, lines, max_contexts) for w in words])
                       if words else np.zeros((0, body.tok_emb.embedding_dim), np.float32))


def _contextual(body: nn.Module, tokenizer: Tokenizer, word: str, layer: int, lines: list[str],
                max_contexts: int) -> np.ndarray:
    """The mean over contexts of the mean over the word's tokens of block ``layer``'s output."""
    text = word.replace("_", " ").strip()
    means = []
    for line in lines:
        if len(means) >= max_contexts:
            break
        start = line.find(text)
        if start < 0:
            continue
        ids, offsets = tokenizer.encode_with_offsets(line)
        ids = ids[:body.config.block_size]
        span = [i for i, (s, e) in enumerate(offsets[:len(ids)]) if s < start + len(text) and e > start
                and line[s:e].strip()]
        if span:
            means.append(_hidden(body, ids, layer)[span].mean(0))
    if not means:
        ids = word_ids(tokenizer, word)
        means.append(_hidden(body, ids, layer).mean(0))
    return np.mean(means, axis=0)


@torch.no_grad()
def _hidden(body: nn.Module, ids: list[int], layer: int) -> np.ndarray:
    """Block ``layer``'s output [T, dim] for one sequence of ids (a forward hook: works for every body)."""
    seen = []
    hook = body.blocks[layer - 1].register_forward_hook(lambda m, i, out: seen.append(out))
    try:
        body(torch.tensor([ids[:body.config.block_size]]))
    finally:
        hook.remove()
    out = seen[0][0] if isinstance(seen[0], tuple) else seen[0]
    return out[0].float().numpy()
