"""Near-duplicate detection of ``lmstack clean`` against exact Jaccard ground truth, and its MinHash stage
against a plain ``datasketch`` loop.

1. Build a corpus with injected exact and near duplicates (``clean_corpus.py``) and run ``lmstack clean``
   on it with every rule but deduplication switched off.
2. Ground truth, computed independently of the pipeline's hashing: the exact shingle sets (word 5-grams,
   character 5-grams for Chinese, as Python sets of strings), every pair with Jaccard >= threshold found by
   an exact similarity join (prefix filtering, Chaudhuri et al. 2006, then verification of each candidate),
   and the greedy "keep the first, drop any later document similar to a kept one" decision.
3. Precision and recall of the documents the pipeline removed, overall and for the near stage alone,
   and the share of its (duplicate, kept) pairs whose true Jaccard is >= threshold.
4. Speed: our signatures + LSH against ``datasketch.MinHash.update_batch`` (SHA-1 per shingle) +
   ``MinHashLSH`` on the same texts, with the reference's precision/recall for comparison.

    python bench/clean_dedup.py --docs 20000 --work /tmp/clean_bench
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import clean_corpus

from lmstack.data.clean.config import CleanConfig, DedupConfig
from lmstack.data.clean.dedup import DedupIndex, MinHasher, exact_key, shingles
from lmstack.data.clean.pipeline import RULES, clean

_WORD, _CHAR = re.compile(r"\w+"), re.compile(r"\w")


def shingle_set(text: str, lang: str, n_words: int = 5, n_chars: int = 5) -> set[str]:
    """Exact shingles as strings: an implementation independent of the pipeline's hashed n-grams."""
    if lang == "zh":
        tokens, n, sep = _CHAR.findall(text.lower()), n_chars, ""
    else:
        tokens, n, sep = _WORD.findall(text.lower()), n_words, " "
    n = min(n, len(tokens))
    return {sep.join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)} if tokens else set()


def similar_pairs(sets: list[set[str]], t: float) -> dict[tuple[int, int], float]:
    """Every pair (i < j) with Jaccard >= t, exactly: prefix-filter candidates, then verify each one."""
    vocab: dict[str, int] = {}
    rows = [[vocab.setdefault(s, len(vocab)) for s in doc] for doc in sets]
    df = np.bincount(np.fromiter((x for r in rows for x in r), dtype=np.int64), minlength=len(vocab))
    # A pair with J >= t shares one of each side's |A| - ceil(t|A|) + 1 rarest shingles.
    prefixes = [sorted(r, key=lambda x: (df[x], x))[: len(r) - math.ceil(t * len(r)) + 1] if r else [] for r in rows]
    def matrix(lists):
        data = [(i, x) for i, lst in enumerate(lists) for x in lst]
        i, x = (np.array(v, dtype=np.int64) for v in zip(*data)) if data else (np.zeros(0, int), np.zeros(0, int))
        return sp.csr_matrix((np.ones(len(i), dtype=np.float32), (i, x)), shape=(len(lists), len(vocab)))
    P, X = matrix(prefixes), matrix(rows)
    cand = sp.triu(P @ P.T, k=1).tocoo()
    sizes = np.array([len(r) for r in rows])
    inter = np.asarray(X[cand.row].multiply(X[cand.col]).sum(axis=1)).ravel()
    jac = inter / (sizes[cand.row] + sizes[cand.col] - inter)
    keep = jac >= t - 1e-9
    return {(int(a), int(b)): float(j) for a, b, j in zip(cand.row[keep], cand.col[keep], jac[keep])}


def greedy(n: int, pairs: dict[tuple[int, int], float], present: list[bool]) -> dict[int, int]:
    """{duplicate: kept} when each document is compared with the documents kept before it."""
    earlier: dict[int, list[int]] = {}
    for a, b in pairs:
        earlier.setdefault(b, []).append(a)
    kept: set[int] = set()
    dups: dict[int, int] = {}
    for j in range(n):
        if not present[j]:
            continue
        match = [a for a in earlier.get(j, []) if a in kept]
        if match:
            dups[j] = max(match, key=lambda a: pairs[(a, j)])
        else:
            kept.add(j)
    return dups


def scores(predicted: set[int], truth: set[int]) -> dict[str, float]:
    tp = len(predicted & truth)
    return {"predicted": len(predicted), "true": len(truth), "true_positives": tp,
            "precision": round(tp / max(len(predicted), 1), 4), "recall": round(tp / max(len(truth), 1), 4)}


def reference_loop(texts: list[str], langs: list[str], cfg: DedupConfig, bands_rows: tuple[int, int]):
    """The plain datasketch way: MinHash per document (SHA-1 per shingle), MinHashLSH query then insert."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, params=bands_rows)
    sigs, removed = {}, {}
    for i, (text, lang) in enumerate(zip(texts, langs)):
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
        m.update_batch([s.encode() for s in shingle_set(text, lang, cfg.shingle_words, cfg.shingle_chars)])
        hits = [(sigs[k].jaccard(m), k) for k in lsh.query(m)]
        best = max(hits, default=(0.0, None))
        if best[0] >= cfg.threshold:
            removed[i] = best[1]
            continue
        lsh.insert(i, m)
        sigs[i] = m
    return removed


def ours_loop(texts: list[str], langs: list[str], cfg: DedupConfig):
    """The pipeline's near-dedup stage on its own: hashed shingles, numpy signatures, the same LSH."""
    hasher, index, removed = MinHasher(cfg.num_perm, cfg.seed), DedupIndex(cfg), {}
    for i, (text, lang) in enumerate(zip(texts, langs)):
        shingle_set = shingles(text, lang, cfg)
        sig = hasher.signature(shingle_set)
        hit = index.find_near(sig, shingle_set)
        if hit:
            removed[i] = int(hit[0])
            continue
        index.add(str(i), exact_key(text), sig, shingle_set)
    return removed, (index.bands.bands, index.bands.rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/clean_bench"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num-perm", type=int, default=128)
    args = ap.parse_args()
    corpus, out = args.work / "dedup_corpus.jsonl", args.work / "dedup_out"
    args.work.mkdir(parents=True, exist_ok=True)
    with open(corpus, "w", encoding="utf-8") as f:
        for rec in clean_corpus.build(args.seed, args.docs):
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")

    cfg = CleanConfig(workers=args.workers, disable=[r for r in RULES if not r.startswith("dedup.")],
                      dedup=DedupConfig(threshold=args.threshold, num_perm=args.num_perm))
    t0 = time.perf_counter()
    result = clean([str(corpus)], out, cfg, overwrite=True)
    pipeline_s = time.perf_counter() - t0

    # Every document that reached deduplication, in corpus order, with the text and language it had there.
    docs: dict[int, dict] = {}
    for path in [*out.glob("shard-*.jsonl"), *(out / "removed").glob("shard-*.jsonl")]:
        for line in path.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            docs[r["index"]] = r
    n = args.docs
    present = [i in docs and docs[i]["clean"].get("rule", "dedup.").startswith("dedup.") for i in range(n)]
    texts = [docs[i]["text"] if present[i] else "" for i in range(n)]
    langs = [docs[i]["clean"]["lang"] if present[i] else "" for i in range(n)]
    t0 = time.perf_counter()
    sets = [shingle_set(t, lang) if p else set() for t, lang, p in zip(texts, langs, present)]
    pairs = similar_pairs(sets, args.threshold)
    truth = greedy(n, pairs, [p and bool(s) for p, s in zip(present, sets)])
    truth_s = time.perf_counter() - t0

    predicted = {i: docs[i]["clean"] for i in range(n) if present[i] and "rule" in docs[i]["clean"]}
    source_index = {docs[i]["clean"]["source"]: i for i in range(n) if present[i]}
    exact_truth = {j for j, i in truth.items() if exact_key(texts[j]) == exact_key(texts[i])}
    near_pred = {i for i, c in predicted.items() if c["rule"] == "dedup.near"}
    pair_ok = [pairs.get((source_index[c["duplicate_of"]], i), 0.0) >= args.threshold - 1e-9
               or exact_key(texts[i]) == exact_key(texts[source_index[c["duplicate_of"]]])
               for i, c in predicted.items()]
    jac_hist = Counter(f"{math.floor(j * 10) / 10:.1f}" for j in pairs.values())

    dcfg = cfg.dedup
    t0 = time.perf_counter()
    ours, bands_rows = ours_loop(texts, langs, dcfg)
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = reference_loop(texts, langs, dcfg, bands_rows)
    ref_s = time.perf_counter() - t0
    near_truth_all = set(truth)  # for the stage-alone loops there is no exact stage in front

    report = {
        "docs": n, "threshold": args.threshold, "num_perm": args.num_perm, "bands_rows": bands_rows,
        "pipeline_seconds": round(pipeline_s, 1), "ground_truth_seconds": round(truth_s, 1),
        "true_pairs_by_jaccard": dict(sorted(jac_hist.items())),
        "pipeline_all_dedup": scores(set(predicted), set(truth)),
        "pipeline_near_stage": scores(near_pred, set(truth) - exact_truth),
        "pipeline_pair_precision": round(sum(pair_ok) / max(len(pair_ok), 1), 4),
        "minhash_stage": {"ours_seconds": round(ours_s, 2), "datasketch_seconds": round(ref_s, 2),
                          "speedup": round(ref_s / ours_s, 2),
                          "ours": scores(set(ours), near_truth_all), "datasketch": scores(set(ref), near_truth_all)},
        "pipeline_result": {k: result[k] for k in ("documents_in", "documents_out", "removed", "seconds")},
    }
    print(json.dumps(report, indent=2))
    (args.work / "dedup_report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
