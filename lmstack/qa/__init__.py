"""Question answering: SQuAD-format data and metrics, extractive readers, multiple choice, cloze prompts, and
open-domain ``ask`` (retrieve -> read or generate)."""
