"""Text input shared by the sequence projects: tokenizers (and, to come, subword vocabularies and bucketed batches)."""
