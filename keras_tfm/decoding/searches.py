"""Every decoding strategy by its `DecodingOptions.method` name."""

from keras_tfm.decoding.beam_search import BeamSearch
from keras_tfm.decoding.greedy_search import GreedySearch
from keras_tfm.decoding.sampling import RandomSampling

SEARCHES = {
    search.method: search for search in (BeamSearch, GreedySearch, RandomSampling)
}
# Every method `generate` runs, and the ones that give one answer per input
# (evaluation and serving use only those).
METHODS = tuple(SEARCHES)
DETERMINISTIC_METHODS = tuple(
    name for name, search in SEARCHES.items() if search.deterministic
)
ALIASES = {"beam_search": "beam", "sampling": "sample"}
