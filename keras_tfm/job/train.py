"""The `keras-tfm train` job, as a sequence of named stages.

    train(config)
        open_run                the strategy, the run directory, the seed
        prepare_corpus          data, tokenizers, tokenized references
        make_pipelines          the train and valid input pipelines, built once
        build_model             the Transformer, compiled for the strategy
        fit_model               `model.fit` with the job's callbacks
        average_and_evaluate    checkpoint averaging, test-set scores
        save_and_export         config, model and metrics files, SavedModel

The config is a checked `RunConfig` (`keras_tfm.job.run_config`); the
directory's layout is `keras_tfm.job.run_directory`'s, and `keras_tfm.job.finished_run`
evaluates and exports a finished run.
"""

import contextlib
import dataclasses
import json
import os
import sys
import time
import warnings
from pathlib import Path

from keras_tfm.errors import ConfigError
from keras_tfm.job.pipelines import make_pipelines
from keras_tfm.job.run_config import RunConfig, load_run_config
from keras_tfm.job.run_directory import RunDirectory

__all__ = ["ConfigError", "RunConfig", "load_run_config", "train"]


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


@dataclasses.dataclass
class Corpus:
    """The run's data: the training files (`([source files], [target
    files])`, streamed), the valid and test splits (`(sources, targets)`
    each, in memory) and the tokenizers."""

    data_dir: Path
    train: tuple
    train_pairs: int
    valid: tuple
    test: tuple
    src_tokenizer: object
    tgt_tokenizer: object
    tokenized_reference: list | None

    @property
    def tokenizers(self):
        return self.src_tokenizer, self.tgt_tokenizer


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


def prepare_corpus(run):
    """Checks the training files in one streaming pass, reads the valid and
    test splits, and learns (or reloads) the tokenizers."""
    from keras_tfm.data.text_files import (
        check_parallel_files,
        read_parallel,
        split_files,
    )
    from keras_tfm.job.evaluation import read_tokenized_reference

    config = run.config
    data_dir = data_directory(config, run.directory)
    src, tgt = config.data.src, config.data.tgt
    train = split_files(data_dir, "train", src, tgt)
    started = time.perf_counter()
    pairs = check_parallel_files(*train)
    run.log(
        f"training text: {pairs:,} sentence pairs in {len(train[0])} file pair(s), "
        f"checked in {time.perf_counter() - started:.1f} s"
    )
    valid, test = (
        read_parallel(data_dir, split, src, tgt) for split in ("valid", "test")
    )
    tokenized = read_tokenized_reference(config.evaluation, data_dir, len(test[1]))
    started = time.perf_counter()
    src_tok, tgt_tok = prepare_tokenizers(config.tokenizer, run.directory, *train)
    run.log(f"tokenizers ready in {time.perf_counter() - started:.1f} s")
    return Corpus(data_dir, train, pairs, valid, test, src_tok, tgt_tok, tokenized)


def data_directory(config, directory):
    """The folder of the parallel text; the numbers task is generated once."""
    from keras_tfm.data.numbers_task import write_numbers_task

    data = config.data
    if data.task == "files":
        return Path(data.data_dir).expanduser()
    if not (directory.data / f"test.{data.tgt}").exists():
        write_numbers_task(
            directory.data,
            max_number=data.max_number,
            valid_size=data.valid_size,
            test_size=data.test_size,
            seed=config.training.seed,
        )
    return directory.data


def prepare_tokenizers(settings, directory, src_files, tgt_files):
    """Trains the SentencePiece models once; later runs reuse the saved ones.

    The training files are streamed to SentencePiece, which keeps a seeded
    sample of `input_sentence_size` sentences. With `shared`, one model is
    learned from both sides (the paper's joint vocabulary, needed to share
    embeddings) and saved as both `src.model` and `tgt.model`.
    """
    from keras_tfm.data.text_files import iterate_lines
    from keras_tfm.text.tokenizer import Tokenizer, train_sentencepiece

    directory.tokenizers.mkdir(parents=True, exist_ok=True)
    paths = {"src": directory.src_tokenizer, "tgt": directory.tgt_tokenizer}
    files = {"src": list(src_files), "tgt": list(tgt_files)}
    if settings.shared:
        files = {side: files["src"] + files["tgt"] for side in paths}
    for side, path in paths.items():
        if path.exists():
            continue
        if settings.shared and paths["src"].exists():
            Tokenizer.load(paths["src"]).save(path)
            continue
        proto = train_sentencepiece(
            iterate_lines(files[side]),
            vocab_size=getattr(settings, f"{side}_vocab_size"),
            model_type=settings.model_type,
            input_sentence_size=settings.input_sentence_size,
        )
        Tokenizer(proto).save(path)
    return [Tokenizer.load(paths[side]) for side in ("src", "tgt")]


def build_model(run, corpus, pipelines):
    """The Transformer, compiled under the strategy, all state built (on a
    batch of `pipelines.valid`)."""
    from keras_tfm import training
    from keras_tfm.models.transformer import build_transformer

    config, strategy = run.config, run.strategy
    model_config = config.model.transformer_config(
        corpus.src_tokenizer.vocab_size, corpus.tgt_tokenizer.vocab_size
    )
    if run.is_chief:
        run.directory.write_json(
            run.directory.transformer_config, model_config.to_dict()
        )
    settings = config.training
    if settings.mixed_precision and training.bfloat16_is_emulated():
        run.log(
            "note: mixed_precision is on, but this CPU has no bfloat16 matrix "
            "instructions (AMX or AVX512_BF16) and there is no GPU: float32 "
            "(mixed_precision = false) may train faster here"
        )
    total_steps, cooldown_steps = None, settings.cooldown_steps
    if cooldown_steps:
        total_steps = run_steps(settings, pipelines.train)
        cooldown_steps, line = plan_cooldown(cooldown_steps, total_steps)
        run.log(line)
    with strategy.scope():
        model = build_transformer(model_config)
        optimizer = training.make_optimizer(
            model_config.d_model,
            warmup_steps=settings.warmup_steps,
            scale=settings.learning_rate_scale,
            total_steps=total_steps,
            cooldown_steps=cooldown_steps,
        )
        training.compile_model(
            model,
            optimizer,
            label_smoothing=settings.label_smoothing,
            jit_compile=settings.jit_compile,
        )
    example = next(iter(pipelines.valid))
    xla = training.prepare_for_fit(
        model, strategy, example, accumulate_steps=settings.accumulate_steps
    )
    if xla == "replica":
        run.log(
            "XLA compiles each replica's forward and backward pass; the gradient "
            "all-reduce and the optimizer update run outside it (XLA cannot "
            "compile cross-replica collectives on the CPU)"
        )
    return model


def plan_cooldown(cooldown_steps, total_steps):
    """`(cooldown steps, line to log)` of a run of `total_steps` optimizer
    steps: a cooldown longer than the run (a `max_steps` that shortens it
    for a smoke test, say) takes the whole run."""
    if cooldown_steps > total_steps:
        return total_steps, (
            f"cooldown_steps ({cooldown_steps}) is more than the run's "
            f"{total_steps} optimizer steps: the learning rate cools down to "
            f"zero over all {total_steps}"
        )
    return cooldown_steps, (
        f"the learning rate cools down to zero over the last "
        f"{cooldown_steps} of {total_steps} optimizer steps"
    )


def run_steps(settings, train):
    """The optimizer steps a whole run takes: `max_steps`, or `epochs` times
    `steps_per_epoch`, or `epochs` times the batches of one pass over the
    `train` pipeline. Bucketing by length makes that count the same in every
    pass, whatever the shuffle order; only subword sampling, which changes
    the lengths each pass, can move it by a few batches."""
    if settings.max_steps is not None:
        return settings.max_steps
    if settings.steps_per_epoch is not None:
        return settings.epochs * settings.steps_per_epoch
    import tensorflow as tf

    batches = int(train.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))
    return settings.epochs * batches


@dataclasses.dataclass
class Fitted:
    seconds: float
    last_epoch: int  # the last epoch trained (a time limit may end it early)


def fit_model(run, model, corpus, pipelines):
    """`model.fit` with checkpoints, TensorBoard, backup and the job's limits."""
    from keras_tfm.job.callbacks import (
        AttentionImages,
        SampleTranslations,
        backup_epoch,
        make_callbacks,
    )
    from keras_tfm.job.evaluation import make_translator
    from keras_tfm.training import MaxSteps, optimizer_steps

    config, settings = run.config, run.config.training
    extra = []
    samples = config.evaluation.samples
    if samples and run.is_chief:
        translate = make_translator(
            model, *corpus.tokenizers, config.evaluation.decoding,
            batch_size=config.evaluation.batch_size,
        )  # fmt: skip
        valid_src, valid_tgt = corpus.valid
        extra.append(
            SampleTranslations(
                translate,
                valid_src[:samples],
                valid_tgt[:samples],
                str(run.writes.logs),
            )
        )
    pictures = config.evaluation.attention_images
    if pictures and run.is_chief:
        extra.append(
            AttentionImages(
                *corpus.tokenizers,
                [s for s in corpus.valid[0] if s.strip()][:pictures],
                run.writes.logs / "attention",
            )
        )
    minutes = settings.time_limit_minutes
    callbacks, nan_guard = make_callbacks(
        run.writes,
        patience=settings.early_stopping_patience,
        time_limit=60.0 * minutes if minutes else None,
        extra=extra,
        log_every_steps=settings.log_every_steps if run.is_chief else 0,
    )
    resumed = backup_epoch(run.writes.backup)
    if resumed is not None:
        run.log(
            f"resuming from the backup in {run.writes.backup} after epoch {resumed}"
        )
    epochs = settings.epochs
    plan = f"{epochs} epochs"
    if settings.steps_per_epoch is not None:
        plan += f" of {settings.steps_per_epoch} steps"
    callbacks.append(_first_step_log(run))
    if settings.max_steps is not None:
        callbacks.append(MaxSteps(settings.max_steps))
        # Epochs no longer limit the run: the step count does.
        steps = settings.steps_per_epoch
        epochs = -(-settings.max_steps // steps) if steps else 1_000_000
        plan = f"{settings.max_steps} optimizer steps"
    run.log(
        f"training {model.count_params():,} parameters on "
        f"{run.strategy.num_replicas_in_sync} replica(s) for {plan}; "
        f"run directory {run.directory.path}"
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        # The pipeline is shuffled by stream_dataset, and filtering by length
        # leaves its size unknown, so Keras' warnings about both are noise.
        warnings.filterwarnings("ignore", message=".*shuffle=True.*")
        warnings.filterwarnings("ignore", message=".*ran out of data.*")
        history = model.fit(
            pipelines.train,
            validation_data=pipelines.valid,
            epochs=epochs,
            steps_per_epoch=settings.steps_per_epoch,
            callbacks=callbacks,
            verbose=settings.verbose if settings.verbose is not None else _verbosity(),
        )
    seconds = time.perf_counter() - started
    run.log(
        f"training ended after {optimizer_steps(model)} optimizer steps, "
        f"{run.elapsed():.1f} s after start"
    )
    if nan_guard.message:
        raise FloatingPointError(nan_guard.message)
    schedule = getattr(model.optimizer, "_learning_rate", None)
    planned = getattr(schedule, "total_steps", None)
    cooldown = getattr(schedule, "cooldown_steps", 0)
    if cooldown and optimizer_steps(model) < planned:
        run.log(
            f"training stopped before the planned {planned} steps: the learning "
            f"rate's cooldown (the last {cooldown}) did not finish"
        )
    last_epoch = history.epoch[-1] + 1 if history.epoch else settings.epochs
    return Fitted(seconds, last_epoch)


def _first_step_log(run):
    """Logs when the first training step is done: the job's start-up time
    (data checks, tokenizers, pipeline, tracing), which must not grow with
    the corpus."""
    import keras

    def first(batch, logs=None):
        if not callback.done:
            callback.done = True
            run.log(f"first training step done {run.elapsed():.1f} s after start")

    callback = keras.callbacks.LambdaCallback(on_train_batch_end=first)
    callback.done = False
    return callback


def average_and_evaluate(run, model, corpus, fitted):
    """Averages the last checkpoints if asked, then scores the test split.

    Returns the metrics and the test split's translations.
    """
    from keras_tfm.job.evaluation import score_test_set
    from keras_tfm.training import average_checkpoints

    count = run.config.training.average_checkpoints
    averaged = []
    if count > 1:
        first = max(1, fitted.last_epoch - count + 1)
        epochs = range(first, fitted.last_epoch + 1)
        averaged = [run.writes.checkpoint(e) for e in epochs]
        averaged = [path for path in averaged if path.is_file()]
        average_checkpoints(model, averaged)
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
        epochs=fitted.last_epoch,
        averaged_checkpoints=len(averaged),
        parameters=model.count_params(),
    )
    return metrics, hypotheses


def save_and_export(run, model, corpus, metrics, translations, export):
    """Writes config.json, model.keras and metrics.json; exports the model."""
    from keras_tfm.job.evaluation import score_lines

    directory = run.directory
    directory.write_json(directory.config, run.config.to_dict())
    directory.save_model(model)
    directory.write_json(directory.metrics, metrics)
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


def _verbosity():
    # The live progress bar on a terminal; one line per epoch in log files.
    return 1 if sys.stdout.isatty() else 2
