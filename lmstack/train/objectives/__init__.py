"""Training objectives, one module each: ``causal`` (next-token prediction), ``mlm`` (masked-language modelling)."""
