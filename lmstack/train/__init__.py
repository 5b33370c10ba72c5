"""Training: one loop for every objective, AdamW + warmup/cosine, atomic resumable checkpoints."""
