"""Building and fitting the model of a `keras-tfm train` run.

`build_model` builds the Transformer under the run's strategy and compiles
it with its optimizer, whose learning-rate cooldown is planned from the
run's length (`run_steps`, `plan_cooldown`); `fit_model` runs `model.fit`
with the job's callbacks (checkpoints, TensorBoard, backup, sample
translations, attention maps) and limits (`max_steps`, the time limit,
early stopping), and returns what the later stages need as `Fitted`.
"""

import dataclasses
import statistics
import sys
import time
import warnings

__all__ = ["Fitted", "build_model", "fit_model", "plan_cooldown", "run_steps"]


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
    tokens_per_second: float | None = None  # the median epoch's
    # The last epoch's validation scores ("valid_loss", "valid_bleu", ...).
    valid_scores: dict = dataclasses.field(default_factory=dict)
    # Validation BLEU by epoch (counted from 1) of this fit call, on the chief.
    valid_bleu: dict = dataclasses.field(default_factory=dict)
    validation: object = None  # ValidationScores, or None without a valid split


def fit_model(run, model, corpus, pipelines):
    """`model.fit` with checkpoints, TensorBoard, backup and the job's limits."""
    from keras_tfm.decoding.translator import make_translator
    from keras_tfm.job.callbacks import (
        AttentionImages,
        SampleTranslations,
        backup_epoch,
        make_callbacks,
    )
    from keras_tfm.job.hparams import write_hyperparameters
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
    validation = _validation_scores(run, model, corpus)
    extra += _validation_callbacks(run, validation)
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
        early_stopping_metric=settings.early_stopping_metric,
        profile_steps=settings.profile_steps if run.is_chief else (),
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
    if run.is_chief:
        write_hyperparameters(run.writes.logs, config)
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
    rates = history.history.get("tokens_per_second")
    rate = round(statistics.median(rates), 1) if rates else None
    valid_scores = {
        "valid" + key[3:]: round(float(values[-1]), 4)
        for key, values in history.history.items()
        if key in ("val_loss", "val_bleu", "val_exact_match") and values
    }
    valid_bleu = {
        epoch + 1: float(value)
        for epoch, value in zip(history.epoch, history.history.get("val_bleu", []))
    }
    return Fitted(seconds, last_epoch, rate, valid_scores, valid_bleu, validation)


def _validation_scores(run, model, corpus):
    """`ValidationScores` over `[evaluation] valid_sentences` pairs of the
    valid split, or None when there are none to score."""
    from keras_tfm.decoding.translator import make_translator
    from keras_tfm.errors import ConfigError
    from keras_tfm.job.validation_scores import ValidationScores, valid_subset

    config = run.config
    evaluation, settings = config.evaluation, config.training
    if not evaluation.valid_sentences:
        return None
    sources, references = valid_subset(
        *corpus.valid, evaluation.valid_sentences, settings.seed
    )
    if not sources:
        setting = settings.setting_needing_validation_bleu
        if setting:
            field, value = setting
            raise ConfigError(
                f"{config.source}: [training] {field} = {value} needs validation "
                "BLEU, but the valid split has no sentences"
            )
        run.log("the valid split has no sentences: no validation BLEU")
        return None
    translate = make_translator(
        model, *corpus.tokenizers, evaluation.valid_decoding,
        batch_size=evaluation.batch_size,
    )  # fmt: skip
    return ValidationScores(translate, sources, references, config.data.tgt)


def _validation_callbacks(run, validation):
    """Validation BLEU every epoch, and the best epoch kept (`[training]
    keep_best_checkpoint`), on the chief."""
    from keras_tfm.job.callbacks import backup_epoch
    from keras_tfm.job.validation_scores import KeepBest

    settings = run.config.training
    if not run.is_chief:
        return []
    callbacks = [validation] if validation is not None else []
    if settings.keep_best_checkpoint:
        callbacks.append(
            KeepBest(
                run.writes.best_checkpoint,
                settings.early_stopping_metric,
                resumed_epoch=backup_epoch(run.writes.backup),
            )
        )
    return callbacks


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


def _verbosity():
    # The live progress bar on a terminal; one line per epoch in log files.
    return 1 if sys.stdout.isatty() else 2
