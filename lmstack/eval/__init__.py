"""Evaluation: perplexity and bits per byte, chat exact match, retrieval metrics (recall, MRR, nDCG, MAP), and the
harness of ``lmstack evaluate`` (lm-evaluation-harness tasks: few-shot, chain-of-thought, self-consistency) with its
metrics (BLEU / chrF / TER, ROUGE, EM / F1) that ``lmstack score`` also applies to existing outputs."""
