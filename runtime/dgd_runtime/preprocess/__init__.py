"""Request pre- and post-processing: tokenizer, chat template, incremental detokenizer, stop strings."""
