"""SQuAD-format data: read and write questions over contexts with answer spans.

Reads SQuAD v1.1/v2.0 (Rajpurkar et al. 2016, 2018) and CMRC2018 (Cui et al. 2019, the same layout) JSON
files, and the flat JSONL records ``lmstack synth`` writes (one question per line, ``context`` inline).
An ``answer_start`` that does not point at the answer's text is repaired to the nearest place the text does
occur; an answer found nowhere keeps its text (it still counts for EM/F1) with ``start = -1`` (it cannot
train a span). Every repair and skip is counted in the returned report.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmstack.data.files import read_json, read_jsonl
from lmstack.errors import LmstackError
from lmstack.io import atomic_open, write_json

CJK = re.compile(r"[\u4e00-\u9fff]")


@dataclass
class Answer:
    text: str
    start: int  # character offset in the context; -1 where the text could not be found there


@dataclass
class SquadExample:
    """One question over one context; ``answers`` is empty for an unanswerable (v2) question."""
    id: str
    question: str
    context: str
    answers: list[Answer] = field(default_factory=list)
    is_impossible: bool = False
    lang: str = "en"
    passage_id: str | None = None


@dataclass
class ReadReport:
    """What reading a file found: the repairs and skips, by count."""
    path: str
    questions: int = 0
    answers: int = 0
    repaired_offsets: int = 0  # answer_start pointed elsewhere; the text was found nearby
    unlocated_answers: int = 0  # the answer text is not in the context at all
    empty_questions: int = 0  # skipped

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def locate(context: str, text: str, start: int) -> int:
    """Where ``text`` occurs in ``context``: at ``start`` if it is there, else the occurrence nearest it, else -1."""
    if context[start:start + len(text)] == text:
        return start
    found = [m.start() for m in re.finditer(re.escape(text), context)] if text else []
    return min(found, key=lambda i: abs(i - start)) if found else -1


def read_squad(path: str | Path) -> tuple[list[SquadExample], ReadReport]:
    """Examples from a SQuAD/CMRC ``.json`` file or a ``.jsonl`` file of flat records, and what was repaired."""
    path = Path(path)
    report = ReadReport(str(path))
    if path.suffix == ".jsonl":
        records = list(read_jsonl(path))
    else:
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise LmstackError(f"{path}: not SQuAD format (expected an object with a 'data' list)")
        records = _flatten(data["data"], path)
    examples = [ex for where, r in records if (ex := _example(r, where, report)) is not None]
    return examples, report


def _flatten(articles: list, path: Path) -> list[tuple[str, dict]]:
    """SQuAD's article -> paragraph -> qas nesting as flat records carrying their context."""
    out = []
    for a, article in enumerate(articles):
        for p, para in enumerate(_field(article, "paragraphs", f"{path}: data[{a}]")):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            context = _field(para, "context", where)
            for q, qa in enumerate(_field(para, "qas", where)):
                if not isinstance(qa, dict):
                    raise LmstackError(f"{where}.qas[{q}]: expected an object, got {type(qa).__name__}")
                out.append((f"{where}.qas[{q}]", {"context": context, "passage_id": para.get("id"), **qa}))
    return out


def _field(record: Any, name: str, where: str) -> Any:
    if not isinstance(record, dict) or name not in record:
        raise LmstackError(f"{where}: missing field '{name}'")
    return record[name]


def _example(r: dict, where: str, report: ReadReport) -> SquadExample | None:
    qid, question, context = (_field(r, name, where) for name in ("id", "question", "context"))
    if not str(question).strip():
        report.empty_questions += 1
        return None
    impossible = bool(r.get("is_impossible", False))
    answers = []
    for i, a in enumerate([] if impossible else _field(r, "answers", where)):
        text = _field(a, "text", f"{where}.answers[{i}]")
        given = int(_field(a, "answer_start", f"{where}.answers[{i}]"))
        start = locate(context, text, given)
        report.repaired_offsets += start not in (given, -1)
        report.unlocated_answers += start == -1
        answers.append(Answer(text, start))
    report.questions += 1
    report.answers += len(answers)
    lang = r.get("lang") or ("zh" if CJK.search(context) else "en")
    return SquadExample(str(qid), question, context, answers, impossible or not answers, lang, r.get("passage_id"))


def write_squad(path: str | Path, examples: list[SquadExample], version: str = "v2.0") -> None:
    """Write SQuAD JSON: one article, one paragraph per distinct context, in first-seen order."""
    paragraphs: dict[str, list[dict]] = defaultdict(list)
    for ex in examples:
        qa: dict[str, Any] = {"id": ex.id, "question": ex.question,
                              "answers": [{"text": a.text, "answer_start": a.start} for a in ex.answers]}
        if version.startswith("v2"):
            qa["is_impossible"] = ex.is_impossible
        paragraphs[ex.context].append(qa)
    data = [{"title": "lmstack", "paragraphs": [{"context": c, "qas": q} for c, q in paragraphs.items()]}]
    write_json(path, {"version": version, "data": data})


def write_predictions(path: str | Path, predictions: dict[str, str]) -> None:
    """The official evaluation scripts' predictions file: {question id: answer text ("" = no answer)}."""
    with atomic_open(path) as f:
        json.dump(predictions, f, ensure_ascii=False, indent=1)
        f.write("\n")


def split_by_context(examples: list[SquadExample], test_fraction: float,
                     seed: int = 0) -> tuple[list[SquadExample], list[SquadExample]]:
    """Train/test split that keeps every question about one context on the same side (no context leaks)."""
    contexts = sorted({ex.context for ex in examples})
    random.Random(seed).shuffle(contexts)
    test = set(contexts[:max(1, round(len(contexts) * test_fraction))])
    return [ex for ex in examples if ex.context not in test], [ex for ex in examples if ex.context in test]
