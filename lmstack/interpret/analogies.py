"""Word analogies a : b :: c : ? and their evaluation, as word2vec's compute-accuracy and gensim do.

Methods, over unit vectors, the three query words excluded from the answers:

- **3CosAdd** (Mikolov et al. 2013): argmax_x cos(x, b - a + c).
- **3CosMul** (Levy & Goldberg 2014, eq. 4): argmax_x cos'(x, b) cos'(x, c) / (cos'(x, a) + eps), with cosines
  shifted to [0, 1] (cos' = (1 + cos) / 2, their footnote 7, as gensim's ``most_similar_cosmul``) and eps = 0.001
  as in the paper (gensim uses 1e-6).

Question files: Mikolov's ``questions-words.txt`` format (": section" lines, then "a b c d" lines; an underscore
in a word stands for a space, as in questions-phrases.txt), which is also the format of CA8, the Chinese analogy
set (Li et al. 2018); or JSON lines with "section", "a", "b", "c", "d" (what ``lmstack synth`` writes as
analogies_test.jsonl). A line that is not four words is an error naming file:line (gensim logs and skips it).

Scoring follows gensim's ``evaluate_word_analogies`` (restrict_vocab, case_insensitive=True,
dummy4unknown=False) exactly: words are compared upper-cased, the vocabulary is the first ``restrict_vocab``
words (the first of several case variants gives the vector), a question with a word outside it is not covered
(skipped, never an error), the answer is the best of the top five candidates whose word is none of the three
query words, and the total is the correct share of covered questions ("Total accuracy"). Coverage is covered /
all questions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmstack.errors import LmstackError
from lmstack.interpret.vectors import WordVectors
from lmstack.io import atomic_open, read_jsonl, text_lines

METHODS = ("3cosadd", "3cosmul")
EPSILON = 0.001
TOP = 5  # gensim looks at the five best candidates for the first one that is not a query word


@dataclass(frozen=True)
class Question:
    section: str
    words: tuple[str, str, str, str]  # a, b, c and the expected d
    where: str  # file:line


def scores(vectors: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, method: str = "3cosadd",
           epsilon: float = EPSILON) -> np.ndarray:
    """Each row of unit ``vectors`` scored as the answer to a : b :: c : ? (higher is better)."""
    if method == "3cosadd":
        target = b - a + c
        norm = np.linalg.norm(target)
        return vectors @ (target / norm if norm > 0 else target)
    if method == "3cosmul":
        ca, cb, cc = ((1 + vectors @ v) / 2 for v in (a, b, c))
        return cb * cc / (ca + epsilon)
    raise LmstackError(f"--method {method!r}: expected one of {', '.join(METHODS)}")


def solve(wv: WordVectors, a: str, b: str, c: str, method: str = "3cosadd", k: int = 1,
          epsilon: float = EPSILON) -> list[tuple[str, float]]:
    """The ``k`` best answers to a : b :: c : ?, the three query words excluded."""
    s = scores(wv.vectors, wv.vector(a), wv.vector(b), wv.vector(c), method, epsilon)
    query = {a, b, c}
    order = (i for i in np.argsort(-s, kind="stable") if wv.words[i] not in query)
    return [(wv.words[i], float(s[i])) for _, i in zip(range(k), order)]


def read_questions(path: str | Path) -> list[Question]:
    """Questions from a Mikolov / CA8 text file, or from JSON lines (by the ``.jsonl`` suffix)."""
    path = Path(path)
    if not path.is_file():
        raise LmstackError(f"{path}: analogy file not found")
    questions = list(_read_jsonl(path) if path.suffix == ".jsonl" else _read_text(path))
    if not questions:
        raise LmstackError(f"{path}: holds no analogy question")
    return questions


def _read_text(path: Path) -> Iterator[Question]:
    section = None
    for where, line in text_lines(path, "analogy file"):
        if line.startswith(": "):
            section = line.lstrip(": ").strip()
            continue
        words = line.split()
        if not words:
            continue
        if section is None:
            raise LmstackError(f"{where}: a question before any ': section' line")
        if len(words) != 4:
            raise LmstackError(f"{where}: expected four words 'a b c d' (or ': section'), got {len(words)}")
        yield Question(section, tuple(w.replace("_", " ") for w in words), where)


def _read_jsonl(path: Path) -> Iterator[Question]:
    for where, record in read_jsonl(path):
        if not isinstance(record, dict):
            raise LmstackError(f"{where}: expected an object with section, a, b, c, d")
        values = [record.get(k) for k in ("section", "a", "b", "c", "d")]
        bad = [k for k, v in zip(("section", "a", "b", "c", "d"), values) if not isinstance(v, str) or not v.strip()]
        if bad:
            raise LmstackError(f"{where}: field '{bad[0]}' must be a non-empty string")
        yield Question(values[0], tuple(values[1:]), where)


def write_questions(questions: list[Question], path: str | Path) -> None:
    """Write ``questions`` in Mikolov's text format (spaces inside a word become underscores), atomically."""
    with atomic_open(Path(path)) as f:
        section = None
        for q in questions:
            if q.section != section:
                section = q.section
                f.write(f": {section}\n")
            f.write(" ".join(w.replace(" ", "_") for w in q.words) + "\n")


def question_words(questions: list[Question]) -> list[str]:
    """Every word of the questions once, in order of first appearance."""
    return list(dict.fromkeys(w for q in questions for w in q.words))


def evaluate(wv: WordVectors, questions: list[Question], method: str = "3cosadd", restrict_vocab: int | None = 300000,
             epsilon: float = EPSILON) -> dict:
    """Per-section and total correct / incorrect counts, accuracy and coverage, as gensim's
    ``evaluate_word_analogies`` (see the module docstring); ``method`` 3cosmul swaps the scoring only."""
    if method not in METHODS:
        raise LmstackError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if restrict_vocab is not None and restrict_vocab < 1:
        raise LmstackError(f"--restrict-vocab must be at least 1, got {restrict_vocab}")
    ok = wv.restrict(restrict_vocab)
    upper: dict[str, int] = {}
    for i, w in enumerate(ok.words):
        upper.setdefault(w.upper(), i)
    sections: dict[str, dict] = {}
    for q in questions:
        s = sections.setdefault(q.section, {"questions": 0, "correct": 0, "incorrect": 0})
        s["questions"] += 1
        a, b, c, expected = (w.upper() for w in q.words)
        if not all(w in upper for w in (a, b, c, expected)):
            continue
        ranked = scores(ok.vectors, *(ok.vectors[upper[w]] for w in (a, b, c)), method, epsilon)
        query_rows = {upper[a], upper[b], upper[c]}
        top = [i for i in np.argsort(-ranked, kind="stable")[:TOP + len(query_rows)] if i not in query_rows][:TOP]
        predicted = None
        for i in top:
            predicted = ok.words[i].upper()
            if predicted not in (a, b, c):
                break
        s["correct" if predicted == expected else "incorrect"] += 1
    report = {name: _figures(s) for name, s in sections.items()}
    total = {k: sum(s[k] for s in sections.values()) for k in ("questions", "correct", "incorrect")}
    return {"method": method, "restrict_vocab": restrict_vocab, "vocabulary": len(ok), "sections": report,
            "total": _figures(total)}


def _figures(s: dict) -> dict:
    covered = s["correct"] + s["incorrect"]
    return {**s, "covered": covered, "accuracy": s["correct"] / covered if covered else 0.0,
            "coverage": covered / s["questions"] if s["questions"] else 0.0}
