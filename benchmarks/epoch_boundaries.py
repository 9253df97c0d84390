"""`keras-tfm train` with each part of an epoch boundary timed.

Runs the CLI in this process with timers around validation (`Model.evaluate`),
the sample translations, the attention images, the TensorBoard write, the
epoch checkpoint and the `BackupAndRestore` save, the time from the start
of an epoch to the end of its first step (the pipeline's restart), and a
validation pass's batches (their sum against the whole pass shows time spent
outside the batches). Each time is printed as a `[boundary]` line as it
happens; the arguments are `keras-tfm`'s.

    python benchmarks/epoch_boundaries.py train \\
        --config training/configs/multi30k_de_en.toml \\
        --data-dir ../shared/data/multi30k --run-dir runs/boundaries --epochs 4
"""

import functools
import statistics
import sys
import time

import keras

import keras_tfm.job.callbacks as callbacks_module
from keras_tfm.cli import main


def timed(cls, method, label):
    original = getattr(cls, method)

    @functools.wraps(original)
    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            seconds = time.perf_counter() - start
            print(f"[boundary] {label}: {seconds:.1f} s", flush=True)

    setattr(cls, method, wrapper)


class FirstStep(keras.callbacks.Callback):
    """Time from an epoch's start to the end of its first step."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.seen = time.perf_counter(), False

    def on_train_batch_end(self, batch, logs=None):
        if not self.seen:
            self.seen = True
            seconds = time.perf_counter() - self.start
            print(f"[boundary] epoch start to first step end: {seconds:.1f} s")

    def on_epoch_end(self, epoch, logs=None):
        print(f"[boundary] epoch {epoch + 1}: training steps done", flush=True)


class ValidationBatches(keras.callbacks.Callback):
    """Where a validation pass spends its time: from its start to the first
    batch, and each batch (Keras fetches a batch inside the step, so a batch's
    time holds its input pipeline's wait and its computation)."""

    def on_test_begin(self, logs=None):
        self.start = self.last = time.perf_counter()
        self.times, self.first = [], None

    def on_test_batch_begin(self, batch, logs=None):
        now = time.perf_counter()
        if self.first is None:
            self.first = now - self.start
        self.last = now

    def on_test_batch_end(self, batch, logs=None):
        float(logs["loss"])  # waits for the step to finish
        self.times.append(time.perf_counter() - self.last)

    def on_test_end(self, logs=None):
        times = self.times or [0.0]
        slowest = max(range(len(times)), key=times.__getitem__)
        print(
            f"[boundary] validation batches: {len(self.times)}, start to first "
            f"{self.first or 0.0:.2f} s, sum {sum(times):.1f} s, median "
            f"{statistics.median(times):.3f} s, slowest #{slowest} "
            f"{times[slowest]:.2f} s",
            flush=True,
        )


def with_first_step(make_callbacks):
    @functools.wraps(make_callbacks)
    def wrapper(*args, **kwargs):
        callbacks, nan_guard = make_callbacks(*args, **kwargs)
        return [FirstStep(), ValidationBatches(), *callbacks], nan_guard

    return wrapper


if __name__ == "__main__":
    timed(keras.Model, "evaluate", "validation")
    timed(callbacks_module.SampleTranslations, "on_epoch_end", "samples")
    timed(callbacks_module.AttentionImages, "on_epoch_end", "attention images")
    timed(keras.callbacks.TensorBoard, "on_epoch_end", "tensorboard")
    timed(keras.callbacks.ModelCheckpoint, "on_epoch_end", "checkpoint")
    timed(keras.callbacks.BackupAndRestore, "on_epoch_end", "backup")
    # fit_model imports make_callbacks from the module when it runs.
    callbacks_module.make_callbacks = with_first_step(callbacks_module.make_callbacks)
    sys.exit(main(sys.argv[1:]))
