"""Adaptation: fine-tuning on conversations, fully or with a PEFT method (LoRA, bottleneck adapters, prefix
tuning, prompt tuning), each a transformation of the model applied where it is loaded."""
