"""The `keras-tfm train` job, as a sequence of named stages.

    train(config)
        open_run                the strategy, the run directory, the seed
        prepare_corpus          data, tokenizers, tokenized references
        make_pipelines          the train and valid input pipelines, built once
        build_model             the Transformer, compiled for the strategy
        fit_model               `model.fit` with the job's callbacks
        average_and_evaluate    checkpoint averaging, test-set scores
        save_and_export         config, model and metrics files, SavedModel

This module runs the stages and holds the first and the last two;
`prepare_corpus` is `keras_tfm.job.corpus`'s, `make_pipelines`
`keras_tfm.job.pipelines`'s, and `build_model` and `fit_model`
`keras_tfm.job.fit`'s. The config is a checked `RunConfig`
(`keras_tfm.job.run_config`); the directory's layout is
`keras_tfm.job.run_directory`'s, and `keras_tfm.job.finished_run` evaluates
and exports a finished run.
"""

import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path

from keras_tfm.errors import ConfigError
from keras_tfm.job.corpus import data_directory, prepare_corpus
from keras_tfm.job.fit import build_model, fit_model, plan_cooldown
from keras_tfm.job.pipelines import make_pipelines
from keras_tfm.job.run_config import RunConfig, load_run_config
from keras_tfm.job.run_directory import RunDirectory

__all__ = [
    "ConfigError",
    "RunConfig",
    "check_strategy_settings",
    "data_directory",
    "load_run_config",
    "plan_cooldown",
    "train",
]


@dataclasses.dataclass
class Run:
    """One process's view of a training run."""

    config: RunConfig
    directory: RunDirectory  # the run directory
    writes: RunDirectory  # where this process writes: `directory` on the chief
    is_chief: bool
    strategy: object
    log: object
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def elapsed(self):
        """Seconds since the job started."""
        return time.perf_counter() - self.started


def train(config, *, run_dir=None, strategy_name="auto", export=True, log=print):
    """Runs the whole job and returns the test metrics.

    Args:
        config: a `RunConfig` (`load_run_config(path)`; None: the built-in
            default task).
        run_dir: the run directory (default `runs/<name>`).
        strategy_name: "auto", "one_device", "mirrored" or "multi_worker"
            (see `keras_tfm.training.make_strategy`).
        export: export the model for TF Serving at the end.
        log: where progress lines go.

    The global Keras dtype policy is set for the run when `[training]
    mixed_precision` asks for bfloat16, and restored afterwards.
    """
    config = load_run_config() if config is None else config
    check_strategy_settings(config, strategy_name)
    run = open_run(config, run_dir, strategy_name, log)
    corpus = prepare_corpus(run)
    pipelines = make_pipelines(run, corpus)
    policy = "mixed_bfloat16" if config.training.mixed_precision else None
    with _dtype_policy(policy):
        model = build_model(run, corpus, pipelines)
        fitted = fit_model(run, model, corpus, pipelines)
        metrics, translations = average_and_evaluate(run, model, corpus, fitted)
        if run.is_chief:
            save_and_export(run, model, corpus, metrics, translations, export)
    return metrics


def check_strategy_settings(config, strategy_name):
    """Settings that a strategy rules out, checked before anything runs."""
    multi_worker = strategy_name == "multi_worker" or "TF_CONFIG" in os.environ
    if config.training.time_limit_minutes is not None and multi_worker:
        # Each worker would read its own clock; all must stop together.
        raise ConfigError(
            f"{config.source}: [training] time_limit_minutes is not supported "
            "with multi-worker training"
        )
    settings = config.training
    if (
        settings.early_stopping_metric == "bleu"
        and settings.early_stopping_patience
        and multi_worker
    ):
        # Only the chief scores the valid split: the other workers could
        # not decide to stop with it.
        raise ConfigError(
            f'{config.source}: [training] early_stopping_metric = "bleu" with '
            "early_stopping_patience is not supported with multi-worker training"
        )
    if (
        settings.cooldown_steps
        and multi_worker
        and settings.max_steps is None
        and settings.steps_per_epoch is None
    ):
        # Each worker would count the batches of its own shard; all must
        # agree on the run's length.
        raise ConfigError(
            f"{config.source}: [training] cooldown_steps needs steps_per_epoch "
            "or max_steps with multi-worker training"
        )


def open_run(config, run_dir, strategy_name, log):
    """Creates the strategy first (MultiWorkerMirroredStrategy must set up the
    runtime before any TensorFlow op runs), then the run directory."""
    from keras_tfm import training

    strategy = training.make_strategy(strategy_name)
    import keras

    directory = RunDirectory(run_dir or Path("runs") / config.name)
    is_chief, index = _worker_role()
    writes = directory if is_chief else directory.worker(index)
    writes.path.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.training.seed)
    return Run(config, directory, writes, is_chief, strategy, log)


def _worker_role():
    """`(is_chief, index)` of this process in `TF_CONFIG`'s cluster.

    The chief writes the run directory: the "chief" task, or worker 0 when
    the cluster has none (as MultiWorkerMirroredStrategy decides). Other
    workers write under `workers/INDEX/`.
    """
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task, cluster = tf_config.get("task", {}), tf_config.get("cluster", {})
    kind, index = task.get("type", "chief"), int(task.get("index", 0))
    if kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster):
        return True, index
    return False, index


def average_and_evaluate(run, model, corpus, fitted):
    """Averages the last checkpoints if asked (or the ones validation BLEU
    chooses), then scores the test split.

    Returns the metrics and the test split's translations.
    """
    from keras_tfm.job.evaluation import score_test_set
    from keras_tfm.job.validation_scores import restore_best
    from keras_tfm.training import average_checkpoints

    settings = run.config.training
    count = settings.average_checkpoints
    kept, record = {}, None
    if settings.keep_best_checkpoint:
        record = restore_best(model, run.writes.best_checkpoint)
    if record is not None:
        kept = {"best_epoch": record["epoch"]}
        kept[f"best_{record['monitor']}"] = record["value"]
        run.log(
            f"the run's model is epoch {record['epoch']}'s, the best by "
            f"{record['monitor']} ({record['value']:.4g})"
        )
    if count > 1 and settings.choose_average and fitted.validation is not None:
        kept.update(choose_epochs_averaged(run, model, fitted))
    elif count > 1:
        first = max(1, fitted.last_epoch - count + 1)
        epochs = range(first, fitted.last_epoch + 1)
        averaged = [run.writes.checkpoint(e) for e in epochs]
        averaged = [path for path in averaged if path.is_file()]
        average_checkpoints(model, averaged)
        kept["averaged_epochs"] = [first, fitted.last_epoch]
        run.log(f"averaged the weights of epochs {first} to {fitted.last_epoch}")
    metrics, hypotheses = score_test_set(
        model,
        corpus.tokenizers,
        run.config.evaluation,
        run.config.data.tgt,
        corpus.test,
        corpus.tokenized_reference,
    )
    metrics.update(
        train_seconds=round(fitted.seconds, 1),
        tokens_per_second=fitted.tokens_per_second,
        **fitted.valid_scores,
        epochs=fitted.last_epoch,
        parameters=model.count_params(),
        **kept,
    )
    return metrics, hypotheses


def choose_epochs_averaged(run, model, fitted):
    """`choose_average = true`: the mean of the epochs (among
    `candidate_windows`) with the best validation BLEU becomes the model.

    Returns the metrics it adds: the epochs averaged and their score.
    """
    from keras_tfm.job.average_choice import candidate_windows, choose_average

    valid_bleu = fitted.valid_bleu
    best = max(valid_bleu, key=valid_bleu.get) if valid_bleu else None
    windows = candidate_windows(
        fitted.last_epoch, run.config.training.average_checkpoints, best
    )
    checkpoints = {
        epoch: path
        for epoch in range(1, fitted.last_epoch + 1)
        if (path := run.writes.checkpoint(epoch)).is_file()
    }
    run.log("choosing the epochs averaged by validation BLEU:")
    (first, last), scores = choose_average(
        model,
        checkpoints,
        windows,
        lambda: fitted.validation.score()["val_bleu"],
        log=run.log,
    )
    run.log(f"averaged the weights of epochs {first} to {last}")
    return {
        "averaged_epochs": [first, last],
        "averaged_valid_bleu": round(scores[first, last], 2),
    }


def save_and_export(run, model, corpus, metrics, translations, export):
    """Writes config.json, model.keras and metrics.json; exports the model."""
    from keras_tfm.job.evaluation import score_lines
    from keras_tfm.job.hparams import write_final_scores
    from keras_tfm.job.projector import write_embeddings

    directory = run.directory
    directory.write_json(directory.config, run.config.to_dict())
    directory.save_model(model)
    directory.write_json(directory.metrics, metrics)
    write_final_scores(run.writes.logs, metrics, step=metrics["epochs"])
    write_embeddings(run.writes.logs, model, *corpus.tokenizers)
    for line in score_lines(metrics):
        run.log(line)
    test_src, test_tgt = corpus.test
    for source, reference, hypothesis in list(zip(test_src, test_tgt, translations))[
        :5
    ]:
        run.log(f"  {source}  ->  {hypothesis}   (reference: {reference})")
    if export:
        from keras_tfm.export.saved_model import export_saved_model

        path = export_saved_model(
            model,
            *corpus.tokenizers,
            name=run.config.name,
            **dataclasses.asdict(run.config.export),
        )
        run.log(f"exported for TF Serving: {path}")
        metrics["export"] = str(path)


@contextlib.contextmanager
def _dtype_policy(name):
    """Sets Keras' global dtype policy to `name` (None: unchanged) for a while."""
    import keras

    previous = keras.config.dtype_policy()
    if name is not None:
        keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
