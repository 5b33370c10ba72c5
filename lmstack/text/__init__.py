"""The text layer: tokenizer, chat template, chat encoding and incremental decoding, under everything that
reads or writes text."""
