"""ROUGE of the lead baseline on the shared real summarisation sets, through ``lmstack score``'s metrics.

The lead baseline "summarises" by copying the start of the input: the first two turns of a DialogSum dialogue (speaker
labels dropped), the first sentence of a CSL abstract (at most 40 characters) as its title. English is scored with
rouge-score's own tokenizer and Porter stemmer (identical to rouge-score), Chinese by Han character (rouge-score
alone scores Chinese 0). Skips (exit 0) without ../shared/data.

    python bench/rouge_lead.py --json
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from lmstack.eval.metrics import rouge

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SPEAKER = re.compile(r"^#\w+#:\s*")
SENTENCE_END = re.compile(r"(?<=[。；;.!?！？])")


def dialogsum(path: Path) -> tuple[list[str], list[list[str]]]:
    leads, refs = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        leads.append(" ".join(SPEAKER.sub("", t) for t in record["dialogue"].split("\n")[:2]))
        refs.append([record[k] for k in ("summary", "summary1", "summary2", "summary3") if k in record])
    return leads, refs


def csl(path: Path) -> tuple[list[str], list[list[str]]]:
    leads, refs = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        _, abstract, title = line.split("\t")[:3]
        leads.append(SENTENCE_END.split(abstract)[0][:40])
        refs.append([title])
    return leads, refs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(json.dumps({"skipped": f"{SHARED} is absent"}))
        return
    sets = {"dialogsum (en)": (dialogsum(SHARED / "dialogsum" / "dialogsum.dev.jsonl"), "en"),
            "csl titles (zh)": (csl(SHARED / "csl_title_summarisation_zh" / "dev.tsv"), "zh")}
    out = {name: {"n": len(leads), **{k: round(v, 4) for k, v in rouge(leads, refs, lang).items()
                                      if isinstance(v, float)}}
           for name, ((leads, refs), lang) in sets.items()}
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        for name, row in out.items():
            print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
