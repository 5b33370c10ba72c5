"""Open-domain QA: retrieve passages from an index, (rerank them,) then read or generate the answer.

* ``--reader DIR``: an extractive reader scores a span in each retrieved passage; the best-scoring span
  across passages is the answer (retriever-reader, Chen et al. 2017), citing the passage it came from.
* ``--generator DIR``: a decoder answers from the retrieved passages, numbered by id in its prompt and
  asked to cite them as ``[id]`` (retrieval-augmented generation, Lewis et al. 2020); the ids it cites
  that were retrieved are returned.

``qa_demo_step`` is the demo's QA stage on the synthetic passages: index, train a tiny reader, answer.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.generate.api import generate
from lmstack.io import read_jsonl
from lmstack.model.hf import load_causal_lm
from lmstack.qa.reader import Prediction, Reader, ReaderSettings, new_reader, score_predictions, train_reader_model
from lmstack.qa.squad import SquadExample, read_squad
from lmstack.retrieval.documents import Passage
from lmstack.retrieval.index import Retriever, build
from lmstack.text.chat import ChatFormat
from lmstack.text.tokenizer import Tokenizer

CITATION = re.compile(r"\[([^\[\]\s]+)\]")
SYSTEM = ("Answer the question using only the passages below, briefly. After the answer, cite the id of each "
          "passage you used in square brackets, like [{example}].")


def read_passages(reader: Reader, question: str, hits: list[tuple[str, str]]) -> tuple[Prediction | None, str | None,
                                                                                      dict[str, Prediction]]:
    """The best answering span over ``hits`` [(passage id, text)]: (prediction, its passage id, all
    predictions). A passage whose null score wins (SQuAD v2 readers) offers no answer."""
    examples = [SquadExample(pid, question, text, passage_id=pid) for pid, text in hits]
    preds = reader.predict(examples, null_threshold=None)
    thresh = reader.settings.null_threshold
    answering = [(p.score, pid) for pid, p in preds.items()
                 if p.text and (thresh is None or p.null_score_diff <= thresh)]
    if not answering:
        return None, None, preds
    _, pid = max(answering)
    return preds[pid], pid, preds


def generation_messages(question: str, hits: list[tuple[str, str]]) -> list[dict]:
    """The conversation to answer: the passages labelled by id, then the question."""
    passages = "\n".join(f"[{pid}] {text}" for pid, text in hits)
    return [{"role": "system", "content": SYSTEM.format(example=hits[0][0])},
            {"role": "user", "content": f"Passages:\n{passages}\n\nQuestion: {question}"}]


def generation_prompt(tokenizer: Tokenizer, question: str, hits: list[tuple[str, str]]) -> str:
    """Chat-template prompt: the passages labelled by id, then the question."""
    return ChatFormat(tokenizer).render(generation_messages(question, hits))


def ask(question: str, index: Path = Path("runs/index"), reader: Path | None = None, generator: Path | None = None,
        rerank: Path | None = None, k: int = 5, max_new_tokens: int = 64) -> dict:
    """Answer a question from an index: retrieve -> (rerank) -> read a span, or generate citing [passage id].

    Args:
        question: the question
        index: index folder (lmstack index)
        reader: extractive reader directory (train-reader)
        generator: decoder model directory; answers from the numbered passages and cites them
        rerank: cross-encoder directory to re-score the retrieved passages
        k: passages to retrieve
        max_new_tokens: the longest generated answer
    """
    if not question.strip():
        raise LmstackError("the question is empty")
    if (reader is None) == (generator is None):
        raise LmstackError("give exactly one of --reader DIR (extractive) or --generator DIR (generative)")
    if k < 1:
        raise LmstackError(f"--k must be at least 1, got {k}")
    t0 = time.perf_counter()
    retriever = Retriever.load(index, reranker=rerank)
    found = retriever.search(question, k)
    hits = [(pid, retriever.text(pid)) for pid, _ in found]
    t1 = time.perf_counter()
    out: dict = {"question": question, "answer": "", "score": None, "cited": [],
                 "mode": "reader" if reader else "generator"}
    if hits and reader is not None:
        best, pid, _ = read_passages(Reader.load(reader), question, hits)
        if best is not None:
            out |= {"answer": best.text, "score": best.score, "cited": [pid], "span": [best.start, best.end]}
    elif hits:
        out |= generate_answer(Path(generator), question, hits, max_new_tokens)
    t2 = time.perf_counter()
    out["passages"] = [{"id": pid, "score": score, "text": retriever.text(pid)} for pid, score in found]
    out["seconds"] = {"retrieve": t1 - t0, "answer": t2 - t1, "total": t2 - t0}
    return out


def generate_answer(model_dir: Path, question: str, hits: list[tuple[str, str]], max_new_tokens: int) -> dict:
    """Decode an answer from a chat prompt holding the passages (a passage's text never forges a turn); keep the
    cited ids that were retrieved."""
    model, tokenizer = load_causal_lm(model_dir).eval(), Tokenizer.load(model_dir)
    chat = ChatFormat(tokenizer)
    prompt = chat.encode(generation_messages(question, hits))
    [text] = generate(model, tokenizer, [prompt], max_new_tokens=max_new_tokens, stop_ids=chat.end_ids)
    text = text.strip()
    retrieved = {pid for pid, _ in hits}
    cited = list(dict.fromkeys(c for c in CITATION.findall(text) if c in retrieved))
    return {"answer": CITATION.sub("", text).strip(), "cited": cited, "generated": text}


def qa_demo_step(out_dir: str | Path, corpus_dir: str | Path, seconds: float = 30.0, k: int = 3,
                 show: int = 4) -> dict:
    """The demo's QA stage over ``lmstack synth`` output (qa_passages/qa_train/qa_test.jsonl): build a BM25
    index, train a tiny reader for about ``seconds``, then answer the held-out questions from the index.
    Returns retrieval recall, reader EM/F1 on the gold passage and end-to-end EM/F1, with example answers."""
    start = time.perf_counter()
    out_dir, corpus_dir = Path(out_dir), Path(corpus_dir)
    passages = [p for _, p in read_jsonl(corpus_dir / "qa_passages.jsonl")]
    build([Passage(p["id"], p["text"]) for p in passages], out_dir / "index")
    retriever = Retriever.load(out_dir / "index")
    train, _ = read_squad(corpus_dir / "qa_train.jsonl")
    test, _ = read_squad(corpus_dir / "qa_test.jsonl")
    reader = new_reader(train, vocab_size=1000, settings=ReaderSettings(max_len=112, doc_stride=48), n_embd=64)
    trained = train_reader_model(reader, train, epochs=50, lr=3e-3, max_seconds=seconds)
    reader.save(out_dir / "reader")
    closed = score_predictions(test, reader.predict(test, null_threshold=None), reader.settings.null_threshold)

    rankings = retriever.search_many([ex.question for ex in test], k)
    recall = {n: sum(ex.passage_id in [p for p, _ in r[:n]] for ex, r in zip(test, rankings)) / len(test)
              for n in (1, k)}
    answers, samples = {}, []
    for ex, ranking in zip(test, rankings):
        best, pid, _ = read_passages(reader, ex.question, [(p, retriever.text(p)) for p, _ in ranking])
        answers[ex.id] = Prediction(best.text if best else "", best.score if best else 0.0, 0.0)
        if len(samples) < show and (not samples or ex.lang != samples[-1]["lang"]):
            samples.append({"question": ex.question, "lang": ex.lang, "answer": answers[ex.id].text,
                            "gold": [a.text for a in ex.answers], "cited": pid, "gold_passage": ex.passage_id})
    opened = score_predictions(test, answers)
    return {"passages": len(passages), "train_questions": len(train), "test_questions": len(test),
            "reader_steps": trained["steps"], "reader_loss": round(trained["loss_last"], 3),
            "recall@1": round(recall[1], 3), f"recall@{k}": round(recall[k], 3),
            "reader_exact": round(closed["exact"], 1), "reader_f1": round(closed["f1"], 1),
            "open_exact": round(opened["exact"], 1), "open_f1": round(opened["f1"], 1),
            "examples": samples, "seconds": round(time.perf_counter() - start, 1)}
