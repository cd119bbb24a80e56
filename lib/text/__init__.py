"""Text input shared by the sequence projects.

tokenizers  the Tokenizer protocol, CharTokenizer, the fixed special ids
subword     sentencepiece vocabularies: train_subword, SubwordTokenizer
batching    bucketed, padded batches with validity masks; seq2seq fields
losses      masked, label-smoothed token cross-entropy and token accuracy
"""
