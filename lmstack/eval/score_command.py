"""``lmstack score``: rate outputs that already exist, with no model — as sacrebleu's CLI does.

Either a hypotheses file against one or more reference files (one segment per line, as WMT distributes them; lines
are read as sacrebleu reads them: split at "\\n", trailing whitespace removed), or a predictions ``.jsonl`` whose
records carry ``prediction`` and ``references`` (a list) or ``reference`` (one text). Corpus metrics (BLEU, chrF,
TER, ROUGE) score the whole set; per-sample metrics (exact_match, squad_em, squad_f1) are means with a 95%
bootstrap interval. Each sacrebleu metric prints its own line, signature included, exactly as ``sacrebleu -f text``.
"""

from __future__ import annotations

import re
from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.eval.metrics import (
    CORPUS_METRICS,
    SACREBLEU_METRICS,
    bootstrap_ci,
    rouge,
    rouge_scorer_for,
    rouge_signature,
    sacrebleu_score,
    sample_metric,
)
from lmstack.io import read_jsonl, write_json

TEXT_METRICS = ("exact_match", "squad_em", "squad_f1")  # per-sample metrics that compare texts
LANG = re.compile(r"^[a-z]{2,3}([-_][A-Za-z0-9]+)*$")


def read_segments(path: Path) -> list[str]:
    """One segment per line (sacrebleu's reading: lines end at "\\n", trailing whitespace stripped)."""
    path = Path(path)
    if not path.is_file():
        raise LmstackError(f"{path}: file not found")
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for lineno, raw in enumerate(lines, 1):
        try:
            out.append(raw.decode("utf-8").rstrip())
        except UnicodeDecodeError as e:
            raise LmstackError(f"{path}:{lineno}: not UTF-8 (invalid byte 0x{raw[e.start]:02x})") from None
    return out


def read_predictions(path: Path) -> tuple[list[str], list[list[str]]]:
    """(predictions, their references) from a .jsonl of {"prediction", "references" | "reference"} records."""
    predictions, references = [], []
    for where, record in read_jsonl(path):
        if not isinstance(record, dict) or not isinstance(record.get("prediction"), str):
            raise LmstackError(f"{where}: expected an object with a text 'prediction' "
                               "and 'references' (a list of texts) or 'reference' (a text)")
        refs = record["references"] if "references" in record else record.get("reference")
        refs = [refs] if isinstance(refs, str) else refs
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            raise LmstackError(f"{where}: 'references' must be a list of texts, or 'reference' one text "
                               f"(got {type(refs).__name__})")
        predictions.append(record["prediction"])
        references.append(refs)
    if not predictions:
        raise LmstackError(f"{path}: no predictions")
    return predictions, references


def read_parallel(hypotheses: Path, references: list[Path]) -> tuple[list[str], list[list[str]]]:
    """A hypotheses file and its reference files, line by line; every file must have as many lines."""
    hyps = read_segments(hypotheses)
    if not hyps:
        raise LmstackError(f"{hypotheses}: no lines")
    streams = []
    for ref in references:
        lines = read_segments(ref)
        if len(lines) != len(hyps):
            raise LmstackError(f"{ref} has {len(lines)} lines but {hypotheses} has {len(hyps)}: "
                               "one segment per line, the same number in every file")
        streams.append(lines)
    return hyps, [list(refs) for refs in zip(*streams)]


def score(hypotheses: Path | None = None, references: list[Path] | None = None, metrics: str = "bleu,chrf",
          lang: str = "en", predictions: Path | None = None, json_out: Path | None = None) -> dict:
    """Score existing outputs against references with no model: BLEU, chrF, TER (sacrebleu, signatures printed),
    ROUGE-1/2/L (rouge-score), exact_match, squad_em, squad_f1.

    Args:
        hypotheses: system outputs, one segment per line (with --references)
        references: one or more reference files, one segment per line, as many lines as the hypotheses
        metrics: comma-separated: bleu, chrf, ter, rouge, exact_match, squad_em, squad_f1
        lang: target language code: zh = Chinese tokens for BLEU, TER, ROUGE and CMRC matching for squad_em/f1
        predictions: instead of files of lines, a .jsonl of {"prediction", "references" or "reference"} records
        json_out: also write the figures to this JSON file
    """
    names = [m.strip() for m in metrics.split(",") if m.strip()]
    valid = [*CORPUS_METRICS, *TEXT_METRICS]
    unknown = [m for m in names if m not in valid]
    if not names or unknown:
        raise LmstackError(f"--metrics: unknown metric(s) {', '.join(unknown) or '(none given)'} "
                           f"(valid: {', '.join(valid)})")
    if not LANG.match(lang):
        raise LmstackError(f"--lang: {lang!r} is not a language code (en, zh, fi, ...)")
    if "rouge" in names:
        rouge_scorer_for(lang)  # a language ROUGE cannot tokenise is refused before any file is read
    if (hypotheses is None) == (predictions is None):
        raise LmstackError("give either a hypotheses file with --references, or --predictions FILE.jsonl")
    if hypotheses is not None:
        if not references:
            raise LmstackError("--hypotheses needs --references (one or more files)")
        preds, refs = read_parallel(hypotheses, references)
        source = {"hypotheses": str(hypotheses), "references": [str(r) for r in references]}
    else:
        if references:
            raise LmstackError("--references goes with --hypotheses; --predictions carries its own references")
        preds, refs = read_predictions(predictions)
        source = {"predictions": str(predictions)}
    if any(not r for r in refs) and any(m in CORPUS_METRICS for m in names):
        raise LmstackError("a prediction has no reference: BLEU, chrF, TER and ROUGE need at least one")

    result: dict = {"n": len(preds), "lang": lang}
    for name in names:
        if name in SACREBLEU_METRICS:
            figure, signature = sacrebleu_score(name, preds, refs, lang)
            print(figure.format(width=1, signature=signature))  # sacrebleu's CLI default width
            result[name], result[f"{name}_signature"] = figure.score, signature
        elif name == "rouge":
            figures, signature = rouge(preds, refs, lang), rouge_signature(lang)
            for key, value in figures.items():
                print(f"{key}|{signature} = {value:.4f}")
            result |= figures
            result["rouge_signature"] = signature
        else:
            fn = sample_metric(name, lang=lang)
            mean, low, high = bootstrap_ci([fn(p, r) for p, r in zip(preds, refs)])
            print(f"{name}|lang:{lang} = {mean:.4f} (95% CI {low:.4f}-{high:.4f})")
            result[name], result[f"{name}_ci95"] = mean, [low, high]
    if json_out is not None:
        write_json(json_out, {**source, **result})
    return result
