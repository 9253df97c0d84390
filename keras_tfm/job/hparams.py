"""A run's hyperparameters and final scores, for TensorBoard's HParams
dashboard: `tensorboard --logdir runs` then lists every run in one table
and one parallel-coordinates view.

Each run's `logs/` folder holds the run's session: its hyperparameters
(written when training starts, so that running runs appear too) and its
final scores (written at the end). The dashboard takes its metric columns
from the scalars of the session's folders: these final scores (the test
split's, training time and speed) in `logs/`, and the last points of the
epoch curves in `logs/train` and `logs/validation` (validation BLEU among
them).
"""

# The config's keys that are hyperparameters: what the model is, what it
# is trained on and how, and how it decodes. Paths, logging and output
# settings are left out.
SECTIONS = ("data", "tokenizer", "model", "training", "evaluation")
NOT_HYPERPARAMETERS = {
    "data": ("data_dir", "src", "tgt", "shuffle_buffer"),
    "training": ("verbose", "log_every_steps", "time_limit_minutes", "profile_steps"),
    "evaluation": (
        "batch_size", "samples", "attention_images", "tokenized_reference",
    ),
}  # fmt: skip

# Final scores, as scalar tags of the session (`logs/`): metrics.json key
# -> (tag, factor).
FINAL_SCORES = {
    "sacrebleu": ("test/sacrebleu", 1.0),
    "tokenized_bleu": ("test/tokenized_bleu", 1.0),
    "exact_match": ("test/exact_match", 1.0),
    "train_seconds": ("training/minutes", 1 / 60),
    "tokens_per_second": ("training/tokens_per_second", 1.0),
    "epochs": ("training/epochs", 1.0),
}


def hyperparameters(config):
    """`{"section.key": value}` of a `RunConfig`, as the dashboard takes
    them: numbers, booleans and strings (lists joined with commas; unset
    keys left out)."""
    values = {}
    resolved = config.to_dict()
    for section in SECTIONS:
        skipped = NOT_HYPERPARAMETERS.get(section, ())
        for key, value in resolved[section].items():
            if key in skipped or value is None:
                continue
            if isinstance(value, (list, tuple)):
                value = ",".join(str(v) for v in value)
            values[f"{section}.{key}"] = value
    return values


def write_hyperparameters(log_dir, config):
    """Starts the run's session in `log_dir`: its hyperparameters. Runs with
    equal hyperparameters (repeats) form one group in the dashboard, which
    can then show their mean, minimum or maximum."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        # No trial id: the dashboard groups sessions by their values.
        hp.hparams(hyperparameters(config))
    writer.close()


def write_final_scores(log_dir, metrics, step):
    """The run's final scores (`metrics.json`'s) as scalars of its session
    at `step` (the last epoch): the dashboard's metric columns."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default(step=step):
        for key, (tag, factor) in FINAL_SCORES.items():
            if metrics.get(key) is not None:
                tf.summary.scalar(tag, float(metrics[key]) * factor)
    writer.close()
