"""Where a keras_tfm training step spends its time: variants timed side by side.

Builds the `small` model of `train_throughput.py` several times in one
process, each with one thing changed, and times them in alternating order
(reversed every other round), so that the VM's drift hits all variants alike.
A variant's cost is its step time against `keras_tfm` (as shipped):

- `keras_layer_norm`: Keras' `LayerNormalization` (autodiff gradient) instead
  of keras_tfm's (hand-written gradient);
- `dropout_16bit`: dropout masks from 16-bit draws, two per 32-bit random
  number, instead of Keras' one float per element (not adopted: see
  RESULTS.md);
- `no_dropout`: every dropout rate 0, the cost of dropout;
- `sgd`: plain SGD instead of Adam, the cost of Adam's update;
- `keras_hub`: the keras-hub model of `train_throughput.py`.

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

VARIANTS = (
    "keras_tfm",
    "keras_layer_norm",
    "dropout_16bit",
    "no_dropout",
    "sgd",
    "keras_hub",
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
    dropout = keras.layers.Dropout
    try:
        if variant == "keras_layer_norm":
            for module in modules:
                module.LayerNormalization = keras.layers.LayerNormalization
        if variant == "dropout_16bit":
            keras.layers.Dropout = Dropout16Bit
        yield
    finally:
        for module, norm in zip(modules, norms):
            module.LayerNormalization = norm
        keras.layers.Dropout = dropout


class StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        float(logs["loss"])  # waits for the step
        self.times.append(time.perf_counter() - self.start)


def build(variant, config):
    keras.utils.set_random_seed(0)
    with swapped(variant):
        if variant == "keras_hub":
            model = build_keras_hub(config)
        else:
            model = build_keras_tfm(config)
    if variant == "no_dropout":
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = 0.0
    optimizer = (
        keras.optimizers.SGD(1e-4) if variant == "sgd" else keras.optimizers.Adam(1e-4)
    )
    model.compile(
        optimizer,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    return model


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
        models[variant] = build(variant, config)
        models[variant].fit(data, steps_per_epoch=5, epochs=1, verbose=0)  # warm-up
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
