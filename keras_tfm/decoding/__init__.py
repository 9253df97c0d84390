"""Autoregressive decoding: options, the searches behind one interface
(beam search, greedy search, sampling), `generate` and its compiled form."""

from keras_tfm.decoding.beam_search import BeamSearch
from keras_tfm.decoding.generation import generate, make_generate_fn
from keras_tfm.decoding.greedy_search import GreedySearch
from keras_tfm.decoding.options import DecodingOptions
from keras_tfm.decoding.sampling import RandomSampling
from keras_tfm.decoding.search import Search
from keras_tfm.decoding.searches import SEARCHES

__all__ = [
    "SEARCHES",
    "BeamSearch",
    "DecodingOptions",
    "GreedySearch",
    "RandomSampling",
    "Search",
    "generate",
    "make_generate_fn",
]
