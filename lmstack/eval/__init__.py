"""Evaluation: perplexity and bits per byte, chat exact match, retrieval metrics (recall, MRR, nDCG, MAP)."""
