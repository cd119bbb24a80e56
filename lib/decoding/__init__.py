"""Decoding from autoregressive models: greedy and sampling (sampling.py), beam
search (beam.py), and the step function of a KV-cached transformer decoder
(cached.py)."""
