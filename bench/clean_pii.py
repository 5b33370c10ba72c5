"""PII detection of ``lmstack clean`` on planted items, and on a control set that has none.

Planted: every kind (e-mail, phone in 18 formats, Chinese identity number, card numbers of five brands in
three groupings, IPv4, IPv6, API keys) in English and Chinese carrier sentences, inside synthetic and real
pages (``clean_corpus.py``); a detection counts when kind, start and end all match. Control: sentences full
of dates, times, prices, versions, ISBNs, order and invoice numbers (``clean_corpus.control_sentences``),
plus real text with many numbers (GSM8K, SQuAD, CMRC 2018, CSL) when ../shared/data is there;
every placeholder inserted there is a false positive.

    python bench/clean_pii.py --docs 20000
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter

import clean_corpus

from lmstack.data.clean.pii import KINDS, find, scrub


def control_texts(seed: int, n: int) -> dict[str, list[str]]:
    out = {"generated": list(clean_corpus.control_sentences(random.Random(seed), n))}
    for page in clean_corpus.real_pages():
        name = page["origin"].split("/")[1]
        if name in ("gsm8k", "squad", "cmrc2018", "csl"):  # DialogSum and WMT news hold real phone numbers
            out.setdefault(name, []).append(page["text"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--control", type=int, default=5000, help="generated control documents")
    args = ap.parse_args()

    planted, found, hit = Counter(), Counter(), Counter()
    misses, false_pos, n_bytes, seconds = [], [], 0, 0.0
    for rec in clean_corpus.build(args.seed, args.docs):
        if rec["truth"]["inject"] not in ("none", "boilerplate_lines"):
            continue  # copies and edits carry their source's personal data unlabelled
        text = rec["text"]
        t0 = time.perf_counter()
        spans = find(text)
        seconds += time.perf_counter() - t0
        n_bytes += len(text.encode())
        truth = {(k, s, e) for k, s, e in rec["pii"]}
        got = {(s.kind, s.start, s.end) for s in spans}
        planted.update(k for k, _, _ in truth)
        found.update(k for k, _, _ in got)
        hit.update(k for k, _, _ in truth & got)
        misses += [(k, text[s:e], rec["lang"]) for k, s, e in truth - got]
        false_pos += [(k, text[s:e], rec["origin"]) for k, s, e in got - truth]

    control = control_texts(args.seed, args.control)
    control_hits = {name: [(s.kind, t[s.start : s.end]) for t in texts for s in find(t)]
                    for name, texts in control.items()}
    per_kind = {k: {"planted": planted[k], "found": found[k], "correct": hit[k],
                    "recall": round(hit[k] / max(planted[k], 1), 4), "precision": round(hit[k] / max(found[k], 1), 4)}
                for k in KINDS}
    report = {
        "planted": sum(planted.values()), "found": sum(found.values()), "correct": sum(hit.values()),
        "recall": round(sum(hit.values()) / max(sum(planted.values()), 1), 4),
        "precision": round(sum(hit.values()) / max(sum(found.values()), 1), 4),
        "per_kind": per_kind,
        "missed_examples": misses[:10], "false_positive_examples": false_pos[:10],
        "control_docs": {k: len(v) for k, v in control.items()},
        "control_placeholders": {k: len(v) for k, v in control_hits.items()},
        "control_examples": {k: v[:5] for k, v in control_hits.items() if v},
        "mb_per_s": round(n_bytes / 2**20 / seconds, 2),
        "example": scrub("请联系13812345678或 ada@example.com，卡号 4111 1111 1111 1111。")[0],
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
