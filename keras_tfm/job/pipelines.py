"""The training job's input pipelines, built once per run.

`batching_options` turns a run config's keys into `BatchingOptions`;
`make_pipelines` builds the streamed training pipeline (this worker's share,
accumulated batches, cached when the shuffle buffer holds the corpus) and
the valid split's, both set up for the strategy.
"""

import dataclasses


@dataclasses.dataclass
class Pipelines:
    """The run's input pipelines, set up for the strategy: `train` streams
    this worker's share of the training text, `valid` the valid split."""

    train: object
    valid: object


def batching_options(config):
    """The training text's `BatchingOptions`, from the config's keys: one
    batch's `batch_size` or `batch_tokens` (`[training]`), the model's
    `max_length`, `[data] shuffle_buffer`, the `[training] seed`, and the
    `[tokenizer]` sampling keys. Epochs of `steps_per_epoch` batches repeat
    the text."""
    from keras_tfm.data.options import BatchingOptions

    settings, tokenizer = config.training, config.tokenizer
    return BatchingOptions(
        batch_size=settings.batch_size,
        batch_tokens=settings.batch_tokens,
        max_length=config.model.max_length,
        shuffle=True,
        shuffle_buffer=config.data.shuffle_buffer,
        seed=settings.seed,
        repeat=settings.steps_per_epoch is not None,
        sampling_alpha=tokenizer.sampling_alpha,
        sampling_nbest_size=tokenizer.sampling_nbest_size,
    )


def make_pipelines(run, corpus):
    """The run's `Pipelines`, built once: `build_model` counts the run's
    steps on `train` (for a cooldown) and builds the model on a `valid`
    batch, `fit_model` trains on both. A counting pass is `train`'s first
    pass, which fills its cache, and training starts at its next shuffle.

    A resumed run shuffles with a seed moved by the epochs already done, so
    that it does not replay the order its first epochs saw.
    """
    from keras_tfm import training
    from keras_tfm.data.batching import make_dataset
    from keras_tfm.data.options import BatchingOptions
    from keras_tfm.data.streaming import stream_dataset
    from keras_tfm.job.callbacks import backup_epoch

    batching = batching_options(run.config)
    # Each worker reads only its share of the training text.
    num_shards, shard_index = training.input_shard(run.strategy)
    # A corpus that the shuffle buffer holds whole is in memory anyway: keep
    # its token ids rather than tokenizing it again every epoch. Sampled
    # segmentations must be drawn anew each pass, so they are never kept.
    cache = (
        not batching.sampling_alpha
        and -(-corpus.train_pairs // num_shards) <= batching.shuffle_buffer
    )
    # With accumulation, a training batch holds N batches' worth, which the
    # train step runs as N micro-batches.
    n = run.config.training.accumulate_steps
    train_options = dataclasses.replace(
        batching,
        batch_size=None if batching.batch_size is None else batching.batch_size * n,
        batch_tokens=(
            None if batching.batch_tokens is None else batching.batch_tokens * n
        ),
        seed=batching.seed + (backup_epoch(run.writes.backup) or 0),
        cache=cache,
    )
    train = stream_dataset(
        *corpus.train,
        *corpus.tokenizers,
        train_options,
        num_shards=num_shards,
        shard_index=shard_index,
    )
    valid_options = BatchingOptions(
        batch_size=batching.batch_size,
        batch_tokens=batching.batch_tokens,
        max_length=batching.max_length,
        cache=True,
    )
    valid = make_dataset(*corpus.valid, *corpus.tokenizers, valid_options)
    return Pipelines(
        training.distribute_options(train, run.strategy, sharded=True),
        training.distribute_options(valid, run.strategy),
    )
