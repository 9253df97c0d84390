"""Trains a small model for a few steps under a strategy; saves its results.

Run as a script (a fresh process is needed to split the CPU into logical
devices or to join a TF_CONFIG cluster):
    python tests/support/scripts/distributed_worker.py MODE OUT_DIR VARIANT...
MODE is one_device, mirrored (two logical CPUs) or multi_worker (TF_CONFIG).
Each VARIANT (`graph`, `xla`, `graph-accumulate2`, `xla-accumulate2`) trains
the same fresh model in turn and saves OUT_DIR/VARIANT.npz: `xla` compiles
the model as the default training config does, `accumulateN` runs each
batch as N micro-batches (one optimizer step). One process runs them all:
each process start costs seconds of TensorFlow imports. The VARIANT `adam`
applies fixed gradients with `keras_tfm.training.Adam` under the strategy
(under `mirrored`, each replica holds a different share of every gradient)
and saves the variables after each step in OUT_DIR/adam.npz.

    python tests/support/scripts/distributed_worker.py shards DATA_DIR OUT_PATH
joins a TF_CONFIG cluster and saves the source sentences (detokenized) its
share of the streamed training text `DATA_DIR/train*.{de,en}` delivers in
one epoch, through the distributed dataset as `model.fit` iterates it.

    python tests/support/scripts/distributed_worker.py cli ARGS...
runs `keras-tfm ARGS...` in a process whose CPU is split into two logical
devices (what `--strategy mirrored` spreads over on a machine without GPUs).
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# tests/ on the path, as pytest has it: the support package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from support.adam import adam_initial, adam_steps  # noqa: E402

GLOBAL_BATCH = 8
STEPS = 3


def batches():
    """Deterministic batches whose halves hold different numbers of tokens."""
    rng = np.random.default_rng(0)
    count = GLOBAL_BATCH * STEPS
    source = rng.integers(3, 30, (count, 9)).astype("int32")
    target = rng.integers(3, 30, (count, 7)).astype("int32")
    labels = rng.integers(3, 30, (count, 7)).astype("int32")
    for row in range(count):
        cut = 2 + (row * 5) % 6
        source[row, cut + 1 :] = 0
        target[row, cut:] = 0
        labels[row, cut:] = 0
    target[:, 0] = 1
    dataset = tf.data.Dataset.from_tensor_slices(
        ({"source": source, "target": target}, labels)
    )
    return dataset.batch(GLOBAL_BATCH)


def split_cpu(count=2):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * count
    )


def train(strategy, out_path, jit_compile=False, accumulate=1):
    import keras

    from keras_tfm import TransformerConfig, build_transformer, training
    from keras_tfm.job import callbacks

    # A fresh session per variant: the same layer names (the saved weights
    # are keyed by path) and the same initial weights as in a new process.
    keras.backend.clear_session()
    keras.utils.set_random_seed(7)
    config = TransformerConfig(
        src_vocab_size=30,
        tgt_vocab_size=30,
        d_model=16,
        num_heads=2,
        d_ff=32,
        num_encoder_layers=1,
        num_decoder_layers=1,
        dropout=0.0,
        max_length=16,
    )
    dataset = batches()
    with strategy.scope():
        model = build_transformer(config)
        # Plain SGD: the update is proportional to the gradient, so a loss
        # scaled twice (or a per-replica mean) shows in the weights. Adam
        # would hide a constant factor and amplify rounding noise in
        # near-zero gradients into full-size steps.
        training.compile_model(
            model, keras.optimizers.SGD(learning_rate=0.5), jit_compile=jit_compile
        )
    initial = {f"initial:{v.path}": np.asarray(v.numpy()) for v in model.weights}
    xla = training.prepare_for_fit(
        model, strategy, next(iter(dataset)), accumulate_steps=accumulate
    )
    history = model.fit(
        training.distribute_options(dataset, strategy),
        epochs=1,
        verbose=0,
        callbacks=[callbacks.ThroughputAndLearningRate()],
    )
    weights = {f"weight:{v.path}": np.asarray(v.numpy()) for v in model.weights}
    np.savez(
        out_path,
        loss=np.array(history.history["loss"]),
        accuracy=np.array(history.history["accuracy"]),
        replicas=strategy.num_replicas_in_sync,
        xla=xla,
        **weights,
        **initial,
    )


def adam(strategy, out_path):
    import keras

    from keras_tfm import training

    initial = adam_initial()
    with strategy.scope():
        variables = [keras.Variable(initial[n], name=n) for n in initial]
        optimizer = training.Adam(
            training.TransformerSchedule(8, warmup_steps=3), beta_2=0.98, epsilon=1e-9
        )
        optimizer.build(variables)

    @tf.function
    def step(kernel, bias, rows, row_grads):
        def replica_fn():
            # Replica 0 holds a quarter of every gradient, replica 1 the rest:
            # the update needs their sum.
            share = tf.where(
                tf.distribute.get_replica_context().replica_id_in_sync_group == 0,
                0.25,
                0.75,
            )
            embedding_grad = tf.IndexedSlices(
                share * row_grads, rows, tf.constant([7, 2])
            )
            optimizer.apply([share * kernel, share * bias, embedding_grad], variables)

        strategy.run(replica_fn)

    results = {}
    for index, grads in enumerate(adam_steps()):
        step(**grads)
        for v in variables:
            results[f"{v.name}:{index}"] = np.asarray(v.numpy())
    results["replicas"] = strategy.num_replicas_in_sync
    np.savez(out_path, **results)


def shards(data_dir, out_path):
    from keras_tfm import training
    from keras_tfm.data.options import BatchingOptions
    from keras_tfm.data.streaming import stream_dataset
    from keras_tfm.data.text_files import iterate_lines, split_files
    from keras_tfm.text.tokenizer import Tokenizer, train_sentencepiece

    strategy = training.make_strategy("multi_worker")
    files = split_files(data_dir, "train", "de", "en")
    # Deterministic: every worker learns the same tokenizers.
    src_tok, tgt_tok = (
        Tokenizer(train_sentencepiece(iterate_lines(paths), 96, "bpe"))
        for paths in files
    )
    num_shards, index = training.input_shard(strategy)
    options = BatchingOptions(
        batch_size=8, max_length=64, shuffle=True, shuffle_buffer=50
    )
    dataset = stream_dataset(
        *files, src_tok, tgt_tok, options, num_shards=num_shards, shard_index=index
    )
    distributed = strategy.experimental_distribute_dataset(
        training.distribute_options(dataset, strategy, sharded=True)
    )
    rows = []
    for inputs, _ in distributed:
        for local in strategy.experimental_local_results(inputs["source"]):
            rows.extend(t.decode("utf-8") for t in src_tok.detokenize(local).numpy())
    np.savez(out_path, rows=np.array(rows), shard=[num_shards, index])


if __name__ == "__main__":
    if sys.argv[1] == "shards":
        shards(sys.argv[2], sys.argv[3])
        sys.exit(0)
    if sys.argv[1] == "cli":
        split_cpu()
        from keras_tfm.cli import main as keras_tfm

        sys.exit(keras_tfm(sys.argv[2:]))
    mode, out_dir, variants = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    if mode == "mirrored":
        split_cpu()
    from keras_tfm import training

    strategy = training.make_strategy(mode)
    for variant in variants:
        if variant == "adam":
            adam(strategy, out_dir / "adam.npz")
            continue
        jit, _, accumulate = variant.partition("-accumulate")
        if jit not in ("graph", "xla"):
            sys.exit(f"unknown variant {variant!r}")
        train(
            strategy,
            out_dir / f"{variant}.npz",
            jit_compile=jit == "xla",
            accumulate=int(accumulate or 1),
        )
