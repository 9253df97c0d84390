"""keras_tfm's Adam (TensorFlow's fused update) against float64 Adam and
Keras' own."""

import json

import keras
import numpy as np
import tensorflow as tf
from support.adam import adam_initial, adam_steps, numpy_adam
from support.schedules import paper_lr

from keras_tfm import training

ADAM_INITIAL = adam_initial()


def run_adam(optimizer, steps):
    """Applies `steps` (dense kernel/bias gradients, IndexedSlices rows)."""
    variables = [keras.Variable(ADAM_INITIAL[n], name=n) for n in ADAM_INITIAL]
    optimizer.build(variables)

    @tf.function
    def step(kernel, bias, rows, row_grads):
        embedding_grad = tf.IndexedSlices(row_grads, rows, (7, 2))
        optimizer.apply([kernel, bias, embedding_grad], variables)

    history = []
    for grads in steps:
        step(**grads)
        history.append({v.name: v.numpy() for v in variables})
    return history, step


def graph_op_types(function, grads):
    """Op types in a traced function's graph and the functions it calls."""
    graph_def = function.get_concrete_function(**grads).graph.as_graph_def()
    types = [node.op for node in graph_def.node]
    for library_function in graph_def.library.function:
        types += [node.op for node in library_function.node_def]
    return types


def test_adam_matches_numpy_and_keras():
    steps = adam_steps()
    schedule = training.TransformerSchedule(8, warmup_steps=3)
    arguments = {"learning_rate": schedule, "beta_2": 0.98, "epsilon": 1e-9}
    fused, step = run_adam(training.Adam(**arguments), steps)
    keras_history, _ = run_adam(keras.optimizers.Adam(**arguments), steps)
    expected = numpy_adam(ADAM_INITIAL, steps, paper_lr(np.arange(4), 8, 3))
    for t in range(len(steps)):
        for name in ADAM_INITIAL:
            change = fused[t][name] - ADAM_INITIAL[name]
            np.testing.assert_allclose(
                change, expected[t][name] - ADAM_INITIAL[name], rtol=1e-5, atol=1e-7
            )
        # Not the embedding: with a row twice in a step, Keras' update
        # squares the two gradients of the row one by one (`ops.square` of
        # IndexedSlices) and adds the squares, instead of squaring their sum.
        for name in ("kernel", "bias"):
            np.testing.assert_allclose(
                fused[t][name], keras_history[t][name], rtol=1e-6, atol=1e-6
            )
    # Embedding rows no gradient ever reached stay where they were.
    untouched = sorted(set(range(7)) - {r for g in steps for r in g["rows"]})
    assert untouched
    np.testing.assert_array_equal(
        fused[-1]["embedding"][untouched], ADAM_INITIAL["embedding"][untouched]
    )
    # The update is TensorFlow's kernel, one per variable, not Keras' ops.
    types = graph_op_types(step, steps[0])
    assert types.count("ResourceApplyAdam") == 3
    assert "Sqrt" not in types


def test_adam_keeps_keras_behaviour_elsewhere():
    """amsgrad (Keras' own update), clipping and gradient accumulation give
    Keras' results; the optimizer round-trips through its config."""
    steps = adam_steps(repeated_rows=False)
    for arguments in (
        {"amsgrad": True},
        {"clipnorm": 0.5},
        {"gradient_accumulation_steps": 2},
    ):
        arguments = {"learning_rate": 0.01, **arguments}
        fused, _ = run_adam(training.Adam(**arguments), steps)
        reference, _ = run_adam(keras.optimizers.Adam(**arguments), steps)
        for name in ADAM_INITIAL:
            # Keras computes 1 - beta_2 in float64, TensorFlow's kernel in
            # float32 from the rounded beta_2 (0.999 -> a 1e-5 relative
            # difference in v, half that in the step).
            np.testing.assert_allclose(
                fused[-1][name], reference[-1][name], rtol=2e-5, atol=1e-6,
                err_msg=f"{arguments} {name}",
            )  # fmt: skip
        assert not np.array_equal(fused[-1]["kernel"], ADAM_INITIAL["kernel"])
    optimizer = training.make_optimizer(64, warmup_steps=100, scale=0.5, clipnorm=1.0)
    rebuilt = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(optimizer)))
    )
    assert type(rebuilt) is training.Adam
    assert rebuilt.get_config() == optimizer.get_config()
