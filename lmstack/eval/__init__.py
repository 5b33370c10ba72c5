"""Evaluation: perplexity and bits per byte (later: IR, QA, BLEU, ROUGE)."""
