"""Looking inside models: word vectors and analogies, attention maps and head statistics, the logit lens."""
