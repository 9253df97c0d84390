"""The training job's pipelines (`keras_tfm.job.pipelines`): what it asks
of `stream_dataset` and `make_dataset` for a config, built once a run."""

import pytest
import tensorflow as tf
from support.paths import TINY

from keras_tfm.data.options import BatchingOptions


def job_pipelines(monkeypatch, tmp_path, values, train_pairs, workers, resumed=None):
    """`{"train": (args, kwargs), "valid": (args, kwargs)}`: what the training
    job's `make_pipelines` passes to `stream_dataset` and `make_dataset` for
    a config of `values`, as the last of `workers` workers, after `resumed`
    epochs."""
    import json
    from types import SimpleNamespace

    import keras_tfm.data.batching
    import keras_tfm.data.streaming
    from keras_tfm import training
    from keras_tfm.job.pipelines import make_pipelines
    from keras_tfm.job.run_config import RunConfig
    from keras_tfm.job.run_directory import RunDirectory

    calls = {}

    def record(name):
        def pipeline(*args, **kwargs):
            calls[name] = (args, kwargs)
            return tf.data.Dataset.range(1)

        return pipeline

    monkeypatch.setattr(keras_tfm.data.streaming, "stream_dataset", record("train"))
    monkeypatch.setattr(keras_tfm.data.batching, "make_dataset", record("valid"))
    monkeypatch.setattr(training, "input_shard", lambda _: (workers, workers - 1))
    writes = RunDirectory(tmp_path)
    if resumed is not None:
        writes.backup.mkdir()
        metadata = writes.backup / "training_metadata.json"
        metadata.write_text(json.dumps({"epoch": resumed}))
    run = SimpleNamespace(
        config=RunConfig.from_dict(values),
        strategy=tf.distribute.get_strategy(),
        writes=writes,
    )
    corpus = SimpleNamespace(
        train=(["train.de"], ["train.en"]),
        train_pairs=train_pairs,
        valid=(["eins"], ["one"]),
        tokenizers=("src tokenizer", "tgt tokenizer"),
    )
    pipelines = make_pipelines(run, corpus)
    assert [int(x) for x in pipelines.train] == [int(x) for x in pipelines.valid] == [0]
    return calls


@pytest.mark.parametrize(
    "pairs, shuffle_buffer, sampling_alpha, workers, cached",
    [
        (29_000, 100_000, 0.0, 1, True),  # Multi30k: the buffer holds it all
        (29_000, 10_000, 0.0, 1, False),  # streamed through a smaller buffer
        (29_000, 100_000, 0.1, 1, False),  # sampled segmentations: never kept
        (150_000, 100_000, 0.0, 2, True),  # each worker's half fits
        (250_000, 100_000, 0.0, 2, False),
    ],
)
def test_training_job_caches_a_corpus_its_buffer_holds(
    monkeypatch, tmp_path, pairs, shuffle_buffer, sampling_alpha, workers, cached
):
    """`keras-tfm train` keeps the token ids when its worker's share of the
    corpus fits the shuffle buffer and segmentations are not sampled; the
    valid split is always kept."""
    values = {
        "data": {"shuffle_buffer": shuffle_buffer},
        "tokenizer": {"sampling_alpha": sampling_alpha},
        "model": {"max_length": 64},
        "training": {"batch_tokens": 2048},
    }
    calls = job_pipelines(monkeypatch, tmp_path, values, pairs, workers)
    (*_, train_options), shards = calls["train"]
    assert train_options == BatchingOptions(
        batch_tokens=2048,
        max_length=64,
        shuffle=True,
        shuffle_buffer=shuffle_buffer,
        sampling_alpha=sampling_alpha,
        cache=cached,
    )
    assert shards == {"num_shards": workers, "shard_index": workers - 1}
    (*_, valid_options), _ = calls["valid"]
    assert valid_options == BatchingOptions(
        batch_tokens=2048, max_length=64, cache=True
    )


def test_training_job_batches_as_its_config_says(monkeypatch, tmp_path):
    """Accumulated batches of 3 x 16 sentences, epochs of fixed steps (the
    text repeats), sampled segmentations, and a seed moved by the 2 epochs a
    backup records; the valid split gets plain batches of 16."""
    values = {
        "data": {"shuffle_buffer": 1000},
        "tokenizer": {"sampling_alpha": 0.25, "sampling_nbest_size": 8},
        "model": {"max_length": 40},
        "training": {
            "batch_size": 16,
            "accumulate_steps": 3,
            "steps_per_epoch": 5,
            "seed": 7,
        },
    }
    calls = job_pipelines(monkeypatch, tmp_path, values, 500, 2, resumed=2)
    args, shards = calls["train"]
    assert args == (
        ["train.de"],
        ["train.en"],
        "src tokenizer",
        "tgt tokenizer",
        BatchingOptions(
            batch_size=48,
            max_length=40,
            shuffle=True,
            shuffle_buffer=1000,
            seed=9,
            repeat=True,
            sampling_alpha=0.25,
            sampling_nbest_size=8,
        ),
    )
    assert shards == {"num_shards": 2, "shard_index": 1}
    assert calls["valid"] == (
        (
            ["eins"],
            ["one"],
            "src tokenizer",
            "tgt tokenizer",
            BatchingOptions(batch_size=16, max_length=40, cache=True),
        ),
        {},
    )


def test_training_job_builds_its_pipelines_once(monkeypatch, tmp_path):
    """One training pipeline and one valid pipeline per run, also when a
    cooldown makes the job count the run's batches before `fit`."""
    import keras_tfm.data.batching
    import keras_tfm.data.streaming
    from keras_tfm.job.run_config import load_run_config
    from keras_tfm.job.train import train

    built = []

    def counted(module, name):
        real = getattr(module, name)

        def pipeline(*args, **kwargs):
            built.append(name)
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, pipeline)

    counted(keras_tfm.data.streaming, "stream_dataset")
    counted(keras_tfm.data.batching, "make_dataset")
    config = load_run_config(TINY).updated(
        {"training.epochs": 1, "training.cooldown_steps": 2}
    )
    lines = []
    train(config, run_dir=tmp_path / "run", export=False, log=lines.append)
    # 300 numbers less 30 valid and 30 test: 240 pairs, 8 batches of 32.
    assert "the learning rate cools down to zero over the last 2 of 8 " in "\n".join(
        lines
    )
    assert sorted(built) == ["make_dataset", "stream_dataset"]
