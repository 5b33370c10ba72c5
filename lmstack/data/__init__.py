"""The data stage: a built-in corpus, cleaning, tokenizers, and token shards a trainer can stream."""
