"""Alignment: preference data, reward models, the DPO family, PPO (InstructGPT) and GRPO, as objectives of the one
trainer (``lmstack.train.trainer.Trainer``)."""
