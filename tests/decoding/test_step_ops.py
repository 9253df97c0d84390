"""A ceiling on the TensorFlow ops of one decoding step.

TensorFlow runs a graph op by op, with a fixed cost for each: at small
batches a step's time is mostly that cost. The decoding loop body of the
graph `generate` builds for the SavedModel (dynamic shapes) is counted for
models of 2 and 3 decoder layers; the difference is one layer's ops.
Constants, identities and no-ops are not counted (they cost nothing once
TensorFlow's graph optimiser has run).
"""

import collections

import keras
import pytest
from support.models import small_config

from keras_tfm import DecodingOptions, build_transformer
from keras_tfm.decoding.generation import generate

pytestmark = pytest.mark.skipif(
    keras.config.backend() != "tensorflow", reason="counts TensorFlow graph ops"
)
FREE = {"Const", "Identity", "NoOp"}
# Counted on 2026-12-05: 74 (beam) and 60 (greedy) ops per layer, 350 and
# 124 outside the layers; the layer-by-layer step took 195 and 183 per
# layer, and 374 and 164 outside.
CEILINGS = {
    "beam": {"per_layer": 76, "rest": 360},
    "greedy": {"per_layer": 62, "rest": 130},
}


def loop_body_ops(method, decoder_layers):
    import tensorflow as tf

    model = build_transformer(small_config(num_decoder_layers=decoder_layers))
    options = DecodingOptions(method=method, beam_size=4, max_length=16)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
    def decode(ids):
        return generate(model, ids, options, jit_compile=False, dynamic_shapes=True)

    graph = decode.get_concrete_function().graph.as_graph_def()
    bodies = [f for f in graph.library.function if "while_body" in f.signature.name]
    assert len(bodies) == 1, [f.signature.name for f in bodies]
    return collections.Counter(n.op for n in bodies[0].node_def if n.op not in FREE)


@pytest.mark.parametrize("method", ["beam", "greedy"])
def test_ops_per_decoding_step(method):
    two, three = loop_body_ops(method, 2), loop_body_ops(method, 3)
    layer = three - two
    rest = sum(two.values()) - 2 * sum(layer.values())
    print(f"{method}: {sum(layer.values())} ops per layer, {rest} outside")
    assert sum(layer.values()) <= CEILINGS[method]["per_layer"], layer
    assert rest <= CEILINGS[method]["rest"], two
    # One product for queries, keys and values, one for the cross-attention
    # queries, two output projections, two feed-forward products.
    assert layer["MatMul"] == 6
    # Scores and weighted values, in self- and cross-attention.
    assert layer["BatchMatMulV2"] == 4
    # The self-attention scores' einsum holds one transpose of the keys,
    # which TensorFlow's graph optimiser folds into the product. Beam search
    # also lays the beams' cross-attention queries out as rows of one
    # product, and back.
    assert layer["Transpose"] == (3 if method == "beam" else 1)
