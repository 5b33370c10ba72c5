"""The text layer: tokenizer, chat template, chat encoding (``ChatFormat``), tool calls read out of replies
(``ToolCallStream``) and incremental decoding, under everything that reads or writes text."""
