"""``lmstack inspect neighbours | analogies | projection``: word vectors of a model directory (see vectors.py for
how a word becomes a vector), their nearest neighbours, analogy accuracy and a 2-D picture."""

from __future__ import annotations

from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.interpret.analogies import METHODS, evaluate, question_words, read_questions
from lmstack.interpret.projection import PROJECTIONS, pca_2d, plot_projection, project
from lmstack.interpret.vectors import check_layer, has_tokens, load, token_words, word_vectors
from lmstack.io import refuse_existing, write_json


def read_contexts(path: Path | None) -> list[str]:
    """The lines of a UTF-8 text file (none without a file)."""
    if path is None:
        return []
    path = Path(path)
    if not path.is_file():
        raise LmstackError(f"{path}: contexts file not found")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise LmstackError(f"{path}: not UTF-8 (invalid byte at offset {e.start})") from None


def check_out(out: Path | None, overwrite: bool) -> None:
    if out is not None:
        refuse_existing(out, overwrite)


def _where(layer: int | None) -> str:
    return "input embeddings" if layer is None else f"layer {layer} (contextual: after block {layer})"


def inspect_neighbours(model: Path, words: list[str], k: int = 10, layer: int | None = None,
                       contexts: Path | None = None, max_contexts: int = 20) -> dict:
    """Nearest neighbours by cosine of words, among the tokenizer's whole-word tokens and the words asked.

    Args:
        model: model directory (a decoder or an encoder, with its tokenizer.json)
        words: the words to look up (a word may span several tokens: its vector is their mean)
        k: how many neighbours to list per word
        layer: use the hidden state after this block (1 = the first) instead of the input embeddings
        contexts: text file whose lines containing a word are the contexts a --layer vector averages over
        max_contexts: at most this many lines per word
    """
    if k < 1:
        raise LmstackError(f"--k must be at least 1, got {k}")
    lines = read_contexts(contexts)
    body, tokenizer = load(model)
    check_layer(body, layer)
    vocab = list(dict.fromkeys([*token_words(tokenizer), *words]))
    wv = word_vectors(body, tokenizer, vocab, layer, lines, max_contexts)
    return {"vectors": _where(layer), "vocabulary": len(wv),
            "neighbours": {w: [[n, round(c, 4)] for n, c in wv.neighbours(w, k)] for w in dict.fromkeys(words)}}


def inspect_analogies(model: Path, questions: Path, method: str = "3cosadd", restrict_vocab: int = 300000,
                      layer: int | None = None, contexts: Path | None = None, max_contexts: int = 20,
                      tokens: bool = False, out: Path | None = None, overwrite: bool = False) -> dict:
    """Analogy accuracy a : b :: c : ? per section and in total, with coverage, as gensim's evaluate_word_analogies.

    Args:
        model: model directory (a decoder or an encoder, with its tokenizer.json)
        questions: questions-words.txt or CA8 text (': section', then 'a b c d' lines), or synth's analogies_test.jsonl
        method: 3cosadd (Mikolov et al. 2013) or 3cosmul (Levy & Goldberg 2014)
        restrict_vocab: only the first this many vocabulary words are answers; a question with another is not covered
        layer: use the hidden state after this block (1 = the first) instead of the input embeddings
        contexts: text file whose lines containing a word are the contexts a --layer vector averages over
        max_contexts: at most this many lines per word
        tokens: the vocabulary starts with the tokenizer's whole-word tokens (else it is the questions' words)
        out: write the report as JSON to this file
        overwrite: replace an existing --out file
    """
    if method not in METHODS:
        raise LmstackError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if restrict_vocab < 1:
        raise LmstackError(f"--restrict-vocab must be at least 1, got {restrict_vocab}")
    check_out(out, overwrite)
    qs = read_questions(questions)
    lines = read_contexts(contexts)
    body, tokenizer = load(model)
    check_layer(body, layer)
    vocab = [w for w in dict.fromkeys([*(token_words(tokenizer) if tokens else []), *question_words(qs)])
             if has_tokens(tokenizer, w)]
    wv = word_vectors(body, tokenizer, vocab, layer, lines, max_contexts)
    report = {"model": str(model), "questions": str(questions), "vectors": _where(layer),
              **evaluate(wv, qs, method, restrict_vocab)}
    if out is not None:
        write_json(out, report)
    total = report["total"]
    return {"vectors": report["vectors"], "method": method, "questions": total["questions"],
            "covered": total["covered"], "coverage": total["coverage"], "correct": total["correct"],
            "accuracy": total["accuracy"],
            "sections": {name: round(s["accuracy"], 4) for name, s in report["sections"].items()},
            **({"out": str(out)} if out is not None else {})}


def inspect_projection(model: Path, words: list[str], out: Path = Path("runs/inspect/projection.png"),
                       method: str = "pca", layer: int | None = None,
                       contexts: Path | None = None, max_contexts: int = 20, seed: int = 0,
                       overwrite: bool = False) -> dict:
    """A 2-D picture of chosen words' vectors: PCA, or t-SNE where scikit-learn is installed, as a PNG.

    Args:
        model: model directory (a decoder or an encoder, with its tokenizer.json)
        words: the words to draw (at least two; four for t-SNE)
        out: the PNG file to write
        method: pca or tsne
        layer: use the hidden state after this block (1 = the first) instead of the input embeddings
        contexts: text file whose lines containing a word are the contexts a --layer vector averages over
        max_contexts: at most this many lines per word
        seed: t-SNE's random state
        overwrite: replace an existing --out file
    """
    if method not in PROJECTIONS:
        raise LmstackError(f"--method {method!r}: expected one of {', '.join(PROJECTIONS)}")
    words = list(dict.fromkeys(words))
    if len(words) < 2:
        raise LmstackError(f"a projection needs at least two different words, got {len(words)}")
    check_out(out, overwrite)
    lines = read_contexts(contexts)
    body, tokenizer = load(model)
    wv = word_vectors(body, tokenizer, words, layer, lines, max_contexts)
    points = project(wv.vectors, method, seed)
    plot_projection(points, words, Path(out), f"{method.upper()} of {len(words)} words: {_where(layer)}")
    result = {"out": str(out), "method": method, "words": len(words)}
    if method == "pca":
        result["explained_variance"] = [round(float(v), 4) for v in pca_2d(wv.vectors)[1]]
    return result
