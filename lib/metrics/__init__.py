"""Metrics computed once over a whole split or sample set (BLEU; FID, KID,
Inception Score, precision/recall and mode counting for generative models)."""
