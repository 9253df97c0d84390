"""Autoregressive decoding: options, greedy search, sampling, beam search."""
