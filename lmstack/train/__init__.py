"""Training: one Trainer for every objective (pretraining, MLM, fine-tuning, the encoder tasks), AdamW with
warmup + cosine / linear / constant schedules, atomic checkpoints with exact resume."""
