"""Translation scores on the valid split while training runs, and keeping
the best epoch by them."""

import json
import random
import time

import keras

from keras_tfm.files import write_atomic
from keras_tfm.job.training_sections import MONITORED
from keras_tfm.text.scoring import corpus_scores


def valid_subset(sources, references, count, seed):
    """At most `count` pairs of the valid split, the same ones in every run
    with `seed` (a seeded sample, in file order); all of them when `count`
    is at least their number. Pairs with a blank source are left out.

    Args:
        sources, references: the split's lines.
        count: the most pairs returned.
        seed: the sample's seed (`[training] seed`).

    Returns:
        `(sources, references)`, lists.
    """
    pairs = [(s, r) for s, r in zip(sources, references) if s.strip()]
    if count < len(pairs):
        chosen = sorted(random.Random(seed).sample(range(len(pairs)), count))
        pairs = [pairs[i] for i in chosen]
    return [s for s, _ in pairs], [r for _, r in pairs]


class ValidationScores(keras.callbacks.Callback):
    """Translates the valid split after every epoch and scores it.

    Adds to the epoch's logs `val_bleu` (sacreBLEU, cased and detokenized),
    `val_exact_match` (the fraction of translations equal to their
    reference) and `val_scoring_seconds` (the translation and scoring time),
    so that TensorBoard's callback, placed after this one, writes them as
    the validation run's `epoch_bleu`, `epoch_exact_match` and
    `epoch_scoring_seconds`, and `EarlyStopping` and `KeepBest` can watch
    `val_bleu`.

    Args:
        translate_fn: `list[str] -> list[str]`, e.g. `make_translator`'s
            (compiled decoding of the model being trained).
        sources, references: the sentences scored (`valid_subset`).
        lang: the target language (for `corpus_scores`).

    Example:
    >>> translate = make_translator(model, src_tok, tgt_tok, greedy_options)
    >>> model.fit(..., callbacks=[ValidationScores(translate, src, ref, "en")])
    """

    def __init__(self, translate_fn, sources, references, lang):
        super().__init__()
        self.translate_fn = translate_fn
        self.sources, self.references = list(sources), list(references)
        self.lang = lang

    def score(self):
        """Translates and scores the sentences with the model as it stands.

        Returns:
            `{"val_bleu", "val_exact_match", "val_scoring_seconds"}`.
        """
        started = time.perf_counter()
        hypotheses = self.translate_fn(self.sources)
        scores = corpus_scores(hypotheses, self.references, lang=self.lang)
        return {
            "val_bleu": scores["sacrebleu"],
            "val_exact_match": scores["exact_match"],
            "val_scoring_seconds": time.perf_counter() - started,
        }

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.score())


class KeepBest(keras.callbacks.Callback):
    """Saves the model of the best epoch so far, by a validation metric.

    After each epoch whose `monitor` value (in the epoch's logs) beats every
    earlier one, the model is saved to `path` (written beside it and
    renamed), and `path` with the suffix `.json` records the epoch (counted
    from 1) and the value. A run resumed from its backup reads that record
    back, so that it still compares against the best epoch before the
    interruption (unless the record is of an epoch after the backup's,
    which training runs again: then it starts afresh); a new run removes
    what an earlier one left there.

    Args:
        path: the `.keras` file to keep.
        metric: a key of `MONITORED` ("loss" or "bleu").
        resumed_epoch: the epochs finished before a resume (the backup's),
            or None for a new run.

    Example:
    >>> keep = KeepBest(run_dir / "checkpoints" / "best.keras", "bleu")
    >>> model.fit(..., callbacks=[ValidationScores(...), keep])
    >>> restore_best(model, keep.path)
    """

    def __init__(self, path, metric, resumed_epoch=None):
        super().__init__()
        self.path, self.resumed_epoch = path, resumed_epoch
        self.record = path.with_suffix(".json")
        self.monitor, self.mode = MONITORED[metric]
        self.best_epoch = self.best_value = None

    def on_train_begin(self, logs=None):
        self.best_epoch = self.best_value = kept = None
        if self.resumed_epoch is not None and self.record.is_file():
            kept = json.loads(self.record.read_text(encoding="utf-8"))
        if kept is None or kept["epoch"] > self.resumed_epoch:
            self.path.unlink(missing_ok=True)
            self.record.unlink(missing_ok=True)
            return
        self.best_epoch, self.best_value = kept["epoch"], kept["value"]

    def _better(self, value):
        if self.best_value is None:
            return True
        if self.mode == "max":
            return value > self.best_value
        return value < self.best_value

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not self._better(float(value)):
            return
        self.best_epoch, self.best_value = epoch + 1, float(value)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.stem}.tmp.keras")
        self.model.save(temporary)
        temporary.replace(self.path)
        record = {"epoch": self.best_epoch, "monitor": self.monitor}
        record["value"] = self.best_value
        write_atomic(self.record, (json.dumps(record) + "\n").encode())


def restore_best(model, path):
    """Loads the weights `KeepBest` kept into `model`.

    Args:
        model: the model to load into.
        path: `KeepBest`'s `path`.

    Returns:
        Its record (`{"epoch", "monitor", "value"}`), or None when nothing
        was kept (the model unchanged).
    """
    record = path.with_suffix(".json")
    if not (path.is_file() and record.is_file()):
        return None
    model.load_weights(path)
    return json.loads(record.read_text(encoding="utf-8"))
