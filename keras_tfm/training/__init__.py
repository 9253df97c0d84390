"""Training pieces for `model.fit` under `tf.distribute`: strategy, schedule,
optimizer, loss, metrics, training step and callbacks.

    precision         whether bfloat16 mixed precision pays off on this CPU
    strategy          the `tf.distribute` strategies and input sharding
    schedule          the paper's learning-rate schedule (plus a cooldown)
    optimizer         Adam with TensorFlow's fused update
    losses            label-smoothed cross-entropy over global tokens
    metrics           masked accuracy and token count
    train_step        compile_model, prepare_for_fit and the token-mean steps
    multi_worker_fit  the Keras patches that MultiWorkerMirroredStrategy needs
    callbacks         optimizer steps and the max-steps stop
    checkpoints       checkpoint averaging

The classes a saved model names (schedule, optimizer, loss, metrics) are
registered by importing this package, which `import keras_tfm` does. Only
`train_step` and `multi_worker_fit` import TensorFlow with the module; their
names are loaded from here on first use, so that importing this package
works under any Keras backend.
"""

import importlib

from keras_tfm.training.callbacks import MaxSteps, optimizer_steps
from keras_tfm.training.checkpoints import average_checkpoints
from keras_tfm.training.losses import LabelSmoothedCrossEntropy
from keras_tfm.training.metrics import MaskedAccuracy, TokenCount
from keras_tfm.training.optimizer import Adam, make_optimizer
from keras_tfm.training.precision import (
    bfloat16_is_emulated,
    cpu_has_native_bfloat16,
)
from keras_tfm.training.schedule import TransformerSchedule
from keras_tfm.training.strategy import (
    STRATEGY_NAMES,
    distribute_options,
    input_shard,
    make_strategy,
)

# Names of the modules that import TensorFlow, loaded on first use.
_LAZY = {
    "compile_model": "train_step",
    "gradient_norm": "train_step",
    "prepare_for_fit": "train_step",
    "token_mean_steps": "train_step",
}

__all__ = [
    "STRATEGY_NAMES",
    "Adam",
    "LabelSmoothedCrossEntropy",
    "MaskedAccuracy",
    "MaxSteps",
    "TokenCount",
    "TransformerSchedule",
    "average_checkpoints",
    "bfloat16_is_emulated",
    "compile_model",
    "cpu_has_native_bfloat16",
    "distribute_options",
    "gradient_norm",
    "input_shard",
    "make_optimizer",
    "make_strategy",
    "optimizer_steps",
    "prepare_for_fit",
    "token_mean_steps",
]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
