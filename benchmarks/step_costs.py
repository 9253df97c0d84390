"""Where a keras_tfm training step spends its time: variants timed side by side.

Builds the `small` model of `train_throughput.py` several times in one
process, each with one thing changed, and times them in alternating order
(reversed every other round), so that the VM's drift hits all variants alike.
A variant's cost is its step time against `keras_tfm` (as shipped):

- `keras_layer_norm`: Keras' `LayerNormalization` (autodiff gradient) instead
  of keras_tfm's (hand-written gradient);
- `keras_dropout`: Keras' `Dropout` (bfloat16 draws, a select forward and
  backward) instead of keras_tfm's (float32 draws, a mask product);
- `dropout_16bit`: dropout masks from 16-bit draws, two per 32-bit random
  number (not adopted: see benchmarks/HISTORY.md);
- `keras_adam`: `keras.optimizers.Adam` instead of `keras_tfm.training.Adam`
  (one fused kernel per variable);
- `explicit_softmax`: the attention as keras_tfm computed it until
  2026-11-30: the scores scaled, masked with a select, normalised with
  exp / max / sum / divide, all differentiated;
- `no_dropout`: every dropout rate 0, the cost of dropout;
- `sgd`: plain SGD instead of Adam, the cost of Adam's update;
- `keras_hub`: the keras-hub model of `train_throughput.py` (with Keras'
  Adam).

    python benchmarks/step_costs.py --rounds 6
    python benchmarks/step_costs.py --variants keras_tfm keras_layer_norm

Same batches, loss and precision (`mixed_bfloat16`, no XLA) as
`train_throughput.py`; per-step times are synchronised on the loss, and the
first step of each round is dropped.
"""

import argparse
import contextlib
import statistics
import time

import keras
from keras import ops
from train_throughput import (
    CONFIGS,
    build_keras_hub,
    build_keras_tfm,
    synthetic_dataset,
)

import keras_tfm.layers.decoder as decoder_module
import keras_tfm.layers.decoder_layer as decoder_layer_module
import keras_tfm.layers.encoder as encoder_module
import keras_tfm.layers.encoder_layer as encoder_layer_module
import keras_tfm.layers.multi_head_attention as attention_module
import keras_tfm.layers.positionwise_feed_forward as feed_forward_module
from keras_tfm.constants import MASK_FILL_VALUE
from keras_tfm.training import Adam

VARIANTS = (
    "keras_tfm",
    "keras_layer_norm",
    "keras_dropout",
    "dropout_16bit",
    "keras_adam",
    "explicit_softmax",
    "no_dropout",
    "sgd",
    "keras_hub",
)
DROPOUT_MODULES = (
    encoder_layer_module,
    decoder_layer_module,
    encoder_module,
    decoder_module,
    feed_forward_module,
)


class Dropout16Bit(keras.layers.Dropout):
    """Dropout whose keep decision compares a 16-bit draw with a threshold."""

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        threshold = int(round(self.rate * 65536))
        size = ops.size(inputs)
        words = keras.random.randint(
            ((size + 1) // 2,), -(2**31), 2**31 - 1, "int32", self.seed_generator
        )
        draws = ops.reshape(ops.view(words, "int16")[:size], ops.shape(inputs))
        keep = ops.cast(draws >= threshold - 32768, inputs.dtype)
        return inputs * keep * ops.cast(65536 / (65536 - threshold), inputs.dtype)


def explicit_softmax_attention(query, key, value, mask=None, **options):
    """keras_tfm's attention before 2026-11-30, op for op (training path)."""
    scale = options.get("scale", 1.0)  # the same product as before
    scores = ops.einsum("bqhd,bkhd->bhqk", query, key)
    scores = ops.cast(scores * ops.cast(scale, query.dtype), "float32")
    if mask is not None:
        scores = ops.where(mask, scores, MASK_FILL_VALUE)
    weights = ops.exp(scores - ops.max(scores, axis=-1, keepdims=True))
    weights = weights / ops.sum(weights, axis=-1, keepdims=True)
    if mask is not None:
        row_valid = ops.any(mask, axis=-1, keepdims=True)
        weights = weights * ops.cast(row_valid, weights.dtype)
    weights = ops.cast(weights, query.dtype)
    return ops.einsum("bhqk,bkhd->bqhd", weights, value)


@contextlib.contextmanager
def swapped(variant):
    """Swaps in the variant's layer classes while its model is built."""
    modules = (
        encoder_layer_module,
        decoder_layer_module,
        encoder_module,
        decoder_module,
    )
    norms = [module.LayerNormalization for module in modules]
    dropouts = [module.Dropout for module in DROPOUT_MODULES]
    attention = attention_module.scaled_dot_product_attention
    try:
        if variant == "keras_layer_norm":
            for module in modules:
                module.LayerNormalization = keras.layers.LayerNormalization
        if variant in ("keras_dropout", "dropout_16bit"):
            replacement = {
                "keras_dropout": keras.layers.Dropout,
                "dropout_16bit": Dropout16Bit,
            }[variant]
            for module in DROPOUT_MODULES:
                module.Dropout = replacement
        if variant == "explicit_softmax":
            attention_module.scaled_dot_product_attention = explicit_softmax_attention
        yield
    finally:
        for module, norm in zip(modules, norms):
            module.LayerNormalization = norm
        for module, dropout in zip(DROPOUT_MODULES, dropouts):
            module.Dropout = dropout
        attention_module.scaled_dot_product_attention = attention


class StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        float(logs["loss"])  # waits for the step
        self.times.append(time.perf_counter() - self.start)


def build(variant, config, data):
    """The variant's compiled model, its training step traced (warm-up)."""
    keras.utils.set_random_seed(0)
    with swapped(variant):
        model = (
            build_keras_hub(config)
            if variant == "keras_hub"
            else build_keras_tfm(config)
        )
        compile_for(variant, model)
        # Traced here, while the variant's functions are swapped in.
        model.fit(data, steps_per_epoch=5, epochs=1, verbose=0)
    return model


def compile_for(variant, model):
    if variant == "no_dropout":
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = 0.0
    if variant == "sgd":
        optimizer = keras.optimizers.SGD(1e-4)
    elif variant in ("keras_adam", "keras_hub"):
        optimizer = keras.optimizers.Adam(1e-4)
    else:
        optimizer = Adam(1e-4)
    model.compile(
        optimizer,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS)
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    config = CONFIGS["small"]
    keras.config.set_dtype_policy("mixed_bfloat16")
    data = synthetic_dataset(config)
    models = {}
    for variant in args.variants:
        models[variant] = build(variant, config, data)
    per_round = {variant: [] for variant in args.variants}
    for round_index in range(args.rounds):
        order = args.variants if round_index % 2 == 0 else args.variants[::-1]
        for variant in order:
            timer = StepTimer()
            models[variant].fit(
                data, steps_per_epoch=args.steps, epochs=1, verbose=0, callbacks=[timer]
            )
            per_round[variant].append(statistics.median(timer.times[1:]) * 1000)
    reference = statistics.median(per_round[args.variants[0]])
    print(f"| variant | ms/step | {args.variants[0]} time / variant time | per round |")
    print("|---|---:|---:|---|")
    for variant in args.variants:
        median = statistics.median(per_round[variant])
        rounds = " ".join(f"{t:.0f}" for t in per_round[variant])
        print(f"| {variant} | {median:.1f} | {reference / median:.3f} | {rounds} |")


if __name__ == "__main__":
    main()
