"""Metrics computed once over a whole split (BLEU; QA's exact match and F1 join later)."""
