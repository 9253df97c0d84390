"""The `keras-tfm train` job: config, data, tokenizers, fit, evaluation."""

import copy
import json
import os
import time
import tomllib
import warnings
from importlib import resources
from pathlib import Path

from keras_tfm.files import write_atomic

DEFAULT_CONFIG = "numbers"


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the field."""


def load_config(path=None):
    """Reads a TOML training config; None means the built-in default task."""
    if path is None:
        text = (
            resources.files("keras_tfm")
            .joinpath("configs", f"{DEFAULT_CONFIG}.toml")
            .read_text(encoding="utf-8")
        )
        source = f"<built-in {DEFAULT_CONFIG}.toml>"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                f"{source}: cannot read config ({error.strerror})"
            ) from None
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: {error}") from None
    for section in ("data", "tokenizer", "model", "training", "evaluation"):
        if not isinstance(config.setdefault(section, {}), dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
    config.setdefault("name", Path(source).stem)
    config["source"] = source
    return config


def _field(config, section, key, default, kind=None):
    value = config[section].get(key, default)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    wrong = not isinstance(value, kinds) or (
        isinstance(value, bool) and bool not in kinds
    )
    if kind is not None and value is not None and wrong:
        raise ConfigError(
            f"{config['source']}: [{section}] {key} must be "
            f"{' or '.join(k.__name__ for k in kinds)}, got {value!r}"
        )
    return value


def model_config(config, src_vocab_size, tgt_vocab_size):
    from keras_tfm.config import TransformerConfig

    values = dict(config["model"])
    preset = values.pop("preset", None)
    values.update(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size)
    if values.get("share_embeddings"):
        size = max(src_vocab_size, tgt_vocab_size)
        values.update(src_vocab_size=size, tgt_vocab_size=size)
    try:
        if preset:
            return TransformerConfig.preset(preset, **values)
        return TransformerConfig.from_dict(values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{config['source']}: [model] {error}") from None


def _write_json(path, payload):
    text = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    write_atomic(path, text.encode("utf-8"))


def prepare_data(config, run_dir):
    """Returns the data directory and language suffixes of the run."""
    from keras_tfm.numbers_task import write_numbers_task

    data = config["data"]
    src, tgt = (
        _field(config, "data", "src", "de", str),
        _field(config, "data", "tgt", "en", str),
    )
    if data.get("data_dir"):
        return Path(data["data_dir"]).expanduser(), src, tgt
    task = _field(config, "data", "task", "numbers", str)
    if task == "files":
        raise ConfigError(
            f"{config['source']}: [data] data_dir is not set; pass --data-dir DIR"
        )
    if task != "numbers":
        raise ConfigError(
            f"{config['source']}: [data] task must be 'numbers' or 'files', "
            f"got {task!r}"
        )
    data_dir = Path(run_dir) / "data"
    if not (data_dir / f"test.{tgt}").exists():
        write_numbers_task(
            data_dir,
            max_number=_field(config, "data", "max_number", 9999, int),
            valid_size=_field(config, "data", "valid_size", 500, int),
            test_size=_field(config, "data", "test_size", 500, int),
            seed=_field(config, "training", "seed", 0, int),
        )
    return data_dir, src, tgt


def prepare_tokenizers(config, run_dir, train_sources, train_targets):
    """Trains the SentencePiece models once; later runs reuse the saved ones.

    With `[tokenizer] shared = true` one model is learned from both sides
    (the paper's joint vocabulary, needed to share embeddings); it is saved
    as both `src.model` and `tgt.model`.
    """
    from keras_tfm.tokenizer import Tokenizer, train_sentencepiece

    directory = Path(run_dir) / "tokenizers"
    directory.mkdir(parents=True, exist_ok=True)
    shared = _field(config, "tokenizer", "shared", False, bool)
    model_type = _field(config, "tokenizer", "model_type", "bpe", str)
    paths = {side: directory / f"{side}.model" for side in ("src", "tgt")}
    if shared and not paths["src"].exists():
        proto = train_sentencepiece(
            list(train_sources) + list(train_targets),
            vocab_size=_field(config, "tokenizer", "src_vocab_size", 8000, int),
            model_type=model_type,
        )
        for path in paths.values():
            Tokenizer(proto).save(path)
    for side, lines in (("src", train_sources), ("tgt", train_targets)):
        if not paths[side].exists():
            proto = train_sentencepiece(
                lines,
                vocab_size=_field(config, "tokenizer", f"{side}_vocab_size", 8000, int),
                model_type=model_type,
            )
            Tokenizer(proto).save(paths[side])
    return [Tokenizer.load(paths[side]) for side in ("src", "tgt")]


def make_translator(model, src_tokenizer, tgt_tokenizer, evaluation):
    """`list[str] -> list[str]` through the tokenizers and cached decoding."""
    import tensorflow as tf

    from keras_tfm.generation import make_generate_fn

    generate_fn = make_generate_fn(
        model,
        max_length=int(evaluation.get("max_length", 64)),
        start_id=tgt_tokenizer.start_id,
        end_id=tgt_tokenizer.end_id,
        method=evaluation.get("method", "greedy"),
        beam_size=int(evaluation.get("beam_size", 4)),
        length_penalty=float(evaluation.get("length_penalty", 0.6)),
    )
    source_limit = model.get_layer("encoder").max_length - 1
    batch_size = int(evaluation.get("batch_size", 64))

    def translate(sentences):
        outputs = []
        for start in range(0, len(sentences), batch_size):
            chunk = sentences[start : start + batch_size]
            ids = src_tokenizer.tokenize(tf.constant(chunk))[:, :source_limit]
            end = tf.fill([ids.nrows(), 1], src_tokenizer.end_id)
            ids = tf.concat([ids, tf.RaggedTensor.from_tensor(end)], axis=1)
            # Pad to a few fixed shapes (rows to a power of two up to the batch
            # size, lengths up to a multiple of 16): each new shape retraces
            # and recompiles the decoder.
            rows = min(batch_size, 1 << (len(chunk) - 1).bit_length())
            length = min(-(-int(ids.bounding_shape()[1]) // 16) * 16, source_limit + 1)
            ids = ids.to_tensor(shape=[rows, length])
            tokens, _ = generate_fn(ids)
            tokens = tf.convert_to_tensor(tokens)[: len(chunk)]
            text = tgt_tokenizer.detokenize(tokens)
            outputs.extend(t.decode("utf-8") for t in text.numpy())
        return outputs

    return translate


def score_lines(metrics):
    """One summary line per decoding method of `score_test_set`'s metrics."""
    by_method = metrics.get("by_method", {metrics["decoding"]: metrics})
    lines = []
    for method, scores in by_method.items():
        parts = [f"sacreBLEU {scores['sacrebleu']}"]
        if "tokenized_bleu" in scores:
            parts.append(f"tokenized BLEU {scores['tokenized_bleu']}")
        parts.append(
            f"exact match {scores['exact_match']:.4f} on "
            f"{scores['sentences']} sentences"
        )
        lines.append(f"test ({method}): " + ", ".join(parts))
    return lines


def evaluation_methods(config):
    """The decoding settings to score the test set with, primary one first.

    `[evaluation] method` is the primary method (its scores are the top-level
    metrics and the export default); `compare = ["greedy"]` adds others,
    scored with the same beam size and length penalty.
    """
    evaluation = config["evaluation"]
    primary = _field(config, "evaluation", "method", "greedy", str)
    others = _field(config, "evaluation", "compare", [], list)
    methods = [primary] + [m for m in others if m != primary]
    for method in methods:
        if method not in ("greedy", "beam"):
            raise ConfigError(
                f"{config['source']}: [evaluation] method must be 'greedy' or "
                f"'beam', got {method!r}"
            )
    return [{**evaluation, "method": method} for method in methods]


def tokenized_reference(config, data_path, expected_lines):
    """The pre-tokenized test references named in the config, or None."""
    from keras_tfm.scoring import read_reference

    name = _field(config, "evaluation", "tokenized_reference", None, str)
    if not name:
        return None
    path = Path(data_path) / Path(name).expanduser()
    return read_reference(path, expected_lines)


def score_test_set(model, src_tok, tgt_tok, config, tgt, test_src, test_tgt, tokenized):
    """Translates the test set with each evaluation method and scores it.

    `tokenized` is `tokenized_reference`'s result (None: no tokenized BLEU).
    Returns the metrics of the primary method with a `by_method` table of
    all of them (each with its decoding time in seconds), and the primary
    method's translations.
    """
    from keras_tfm.scoring import corpus_scores

    by_method = {}
    primary_hypotheses = None
    for evaluation in evaluation_methods(config):
        translate = make_translator(model, src_tok, tgt_tok, evaluation)
        started = time.perf_counter()
        hypotheses = translate(test_src)
        seconds = time.perf_counter() - started
        scores = corpus_scores(hypotheses, test_tgt, tokenized, lang=tgt)
        scores["decode_seconds"] = round(seconds, 1)
        by_method[evaluation["method"]] = scores
        if primary_hypotheses is None:
            primary_hypotheses = hypotheses
    primary = next(iter(by_method))
    metrics = {**by_method[primary], "decoding": primary}
    if len(by_method) > 1:
        metrics["by_method"] = by_method
    return metrics, primary_hypotheses


def train(
    config,
    *,
    run_dir=None,
    epochs=None,
    strategy_name="auto",
    data_dir=None,
    src=None,
    tgt=None,
    export=True,
    log=print,
):
    """Runs the whole job and returns the metrics dict."""
    config = copy.deepcopy(config)
    if data_dir is not None:
        config["data"]["data_dir"] = str(data_dir)
    if src is not None:
        config["data"]["src"] = src
    if tgt is not None:
        config["data"]["tgt"] = tgt
    if epochs is not None:
        config["training"]["epochs"] = epochs

    # The strategy comes first: MultiWorkerMirroredStrategy must configure the
    # runtime before any TensorFlow op runs.
    from keras_tfm import training

    strategy = training.make_strategy(strategy_name)

    import keras

    from keras_tfm.data import make_dataset, read_parallel
    from keras_tfm.model import build_transformer

    run_dir = Path(run_dir or Path("runs") / config["name"])
    run_dir.mkdir(parents=True, exist_ok=True)
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = tf_config.get("task", {})
    is_chief = task.get("index", 0) == 0 and task.get("type", "worker") in (
        "worker",
        "chief",
    )
    write_dir = run_dir if is_chief else run_dir / "workers" / str(task.get("index"))
    write_dir.mkdir(parents=True, exist_ok=True)

    seed = _field(config, "training", "seed", 0, int)
    keras.utils.set_random_seed(seed)
    data_path, src, tgt = prepare_data(config, run_dir)
    train_src, train_tgt = read_parallel(data_path, "train", src, tgt)
    valid_src, valid_tgt = read_parallel(data_path, "valid", src, tgt)
    test_src, test_tgt = read_parallel(data_path, "test", src, tgt)
    # Settings only used after training are checked before it.
    evaluation_methods(config)
    tokenized = tokenized_reference(config, data_path, len(test_tgt))
    src_tok, tgt_tok = prepare_tokenizers(config, run_dir, train_src, train_tgt)
    model_cfg = model_config(config, src_tok.vocab_size, tgt_tok.vocab_size)
    _write_json(run_dir / "transformer_config.json", model_cfg.to_dict())

    settings = config["training"]
    if _field(config, "training", "mixed_precision", False, bool):
        keras.config.set_dtype_policy("mixed_bfloat16")
    batching = {}
    if settings.get("batch_tokens"):
        batching["batch_tokens"] = _field(config, "training", "batch_tokens", None, int)
    else:
        batching["batch_size"] = _field(config, "training", "batch_size", 64, int)
    common = dict(max_length=model_cfg.max_length, **batching)
    train_ds = make_dataset(
        train_src, train_tgt, src_tok, tgt_tok, shuffle=True, seed=seed, **common
    )
    valid_ds = make_dataset(valid_src, valid_tgt, src_tok, tgt_tok, **common)
    train_ds = training.distribute_options(train_ds, strategy)
    valid_ds = training.distribute_options(valid_ds, strategy)

    with strategy.scope():
        model = build_transformer(model_cfg)
        optimizer = training.make_optimizer(
            model_cfg.d_model,
            warmup_steps=_field(config, "training", "warmup_steps", 4000, int),
            scale=float(settings.get("learning_rate_scale", 1.0)),
        )
        training.compile_model(
            model,
            optimizer,
            label_smoothing=float(settings.get("label_smoothing", 0.1)),
            jit_compile=_field(config, "training", "jit_compile", False, bool),
        )
    training.prepare_for_fit(model, strategy, next(iter(valid_ds)))

    evaluation = config["evaluation"]
    translate = make_translator(model, src_tok, tgt_tok, evaluation)
    samples = int(evaluation.get("samples", 4))
    extra = []
    if samples and is_chief:
        extra.append(
            training.SampleTranslations(
                translate,
                valid_src[:samples],
                valid_tgt[:samples],
                str(write_dir / "logs"),
            )
        )
    time_limit = _field(config, "training", "time_limit_minutes", None, (int, float))
    if time_limit is not None:
        if time_limit <= 0:
            raise ConfigError(
                f"{config['source']}: [training] time_limit_minutes must be > 0, "
                f"got {time_limit!r}"
            )
        if strategy_name == "multi_worker" or "TF_CONFIG" in os.environ:
            # Each worker would read its own clock; all must stop together.
            raise ConfigError(
                f"{config['source']}: [training] time_limit_minutes is not "
                "supported with multi-worker training"
            )
    average = _field(config, "training", "average_checkpoints", 1, int)
    if average < 1:
        raise ConfigError(
            f"{config['source']}: [training] average_checkpoints must be >= 1, "
            f"got {average}"
        )
    callbacks, nan_guard = training.make_callbacks(
        str(write_dir),
        patience=int(settings.get("early_stopping_patience", 0)),
        time_limit=60.0 * time_limit if time_limit else None,
        extra=extra,
    )
    resumed = training.backup_epoch(write_dir / "backup")
    if resumed is not None:
        log(f"resuming from the backup in {write_dir / 'backup'} after epoch {resumed}")
    total_epochs = _field(config, "training", "epochs", 10, int)
    log(
        f"training {model.count_params():,} parameters on "
        f"{strategy.num_replicas_in_sync} replica(s) for {total_epochs} epochs; "
        f"run directory {run_dir}"
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        # The pipeline is shuffled by make_dataset, and filtering by length
        # leaves its size unknown, so Keras' warnings about both are noise.
        warnings.filterwarnings("ignore", message=".*shuffle=True.*")
        warnings.filterwarnings("ignore", message=".*ran out of data.*")
        history = model.fit(
            train_ds,
            validation_data=valid_ds,
            epochs=total_epochs,
            callbacks=callbacks,
            verbose=settings.get("verbose", _verbosity()),
        )
    train_seconds = time.perf_counter() - started
    if nan_guard.message:
        raise FloatingPointError(nan_guard.message)
    last_epoch = history.epoch[-1] + 1 if history.epoch else total_epochs
    averaged = []
    if average > 1:
        first = max(1, last_epoch - average + 1)
        averaged = [
            write_dir / "checkpoints" / f"epoch_{epoch:03d}.keras"
            for epoch in range(first, last_epoch + 1)
        ]
        averaged = [path for path in averaged if path.is_file()]
        training.average_checkpoints(model, averaged)
        log(f"averaged the weights of epochs {first} to {last_epoch}")

    metrics, hypotheses = score_test_set(
        model, src_tok, tgt_tok, config, tgt, test_src, test_tgt, tokenized
    )
    metrics.update(
        train_seconds=round(train_seconds, 1),
        # The last epoch trained: fewer than configured after a time limit
        # or early stopping.
        epochs=last_epoch,
        averaged_checkpoints=len(averaged),
        parameters=model.count_params(),
    )
    if not is_chief:
        return metrics
    export_settings = {
        "method": evaluation.get("method", "greedy"),
        "beam_size": int(evaluation.get("beam_size", 4)),
        "length_penalty": float(evaluation.get("length_penalty", 0.6)),
        "max_length": int(evaluation.get("max_length", model_cfg.max_length)),
        **config.get("export", {}),
    }
    resolved = {k: v for k, v in config.items() if k != "source"}
    _write_json(run_dir / "config.json", {**resolved, "export": export_settings})
    model.save(run_dir / "model.keras.tmp.keras")
    os.replace(run_dir / "model.keras.tmp.keras", run_dir / "model.keras")
    _write_json(run_dir / "metrics.json", metrics)
    for line in score_lines(metrics):
        log(line)
    for source, reference, hypothesis in list(zip(test_src, test_tgt, hypotheses))[:5]:
        log(f"  {source}  ->  {hypothesis}   (reference: {reference})")
    if export:
        export_model = _export_hook()
        if export_model is not None:
            path = export_model(run_dir, name=config["name"])
            log(f"exported for TF Serving: {path}")
            metrics["export"] = str(path)
    return metrics


def finished_run_files(run_dir, model=None, extra=(), error=ConfigError):
    """`[*extra, model, src tokenizer, tgt tokenizer]` of a finished run.

    `model` replaces `run_dir/model.keras`. Raises `error` naming every
    missing file.
    """
    run_dir = Path(run_dir)
    files = [
        *map(Path, extra),
        Path(model) if model else run_dir / "model.keras",
        run_dir / "tokenizers" / "src.model",
        run_dir / "tokenizers" / "tgt.model",
    ]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise error(
            f"{run_dir} is not a finished training run: missing {', '.join(missing)}"
        )
    return files


def evaluate_run(run_dir, data_dir=None, overrides=None, checkpoint=None):
    """Scores a finished run's model on its test set again.

    Reads `run_dir/config.json` (the resolved config the run wrote),
    `run_dir/model.keras` (or the `.keras` file `checkpoint`, e.g. one epoch
    of `run_dir/checkpoints`) and the run's tokenizers; `overrides`
    replaces keys of the `[evaluation]` table (e.g. `method`, `beam_size`,
    `compare`). Returns the same metrics as the end of `train`, without the
    training fields.
    """
    run_dir = Path(run_dir)
    files = finished_run_files(
        run_dir, model=checkpoint, extra=[run_dir / "config.json"]
    )
    config = json.loads(files[0].read_text(encoding="utf-8"))
    config["source"] = str(files[0])
    for section in ("data", "training", "evaluation"):
        config.setdefault(section, {})
    if data_dir is not None:
        config["data"]["data_dir"] = str(data_dir)
    config["evaluation"].update(
        {key: value for key, value in (overrides or {}).items() if value is not None}
    )
    data_path, src, tgt = prepare_data(config, run_dir)

    import keras

    import keras_tfm.model  # noqa: F401  (registers the layers)
    from keras_tfm.data import read_parallel
    from keras_tfm.tokenizer import Tokenizer

    test_src, test_tgt = read_parallel(data_path, "test", src, tgt)
    tokenized = tokenized_reference(config, data_path, len(test_tgt))
    model = keras.saving.load_model(files[1], compile=False)
    src_tok, tgt_tok = Tokenizer.load(files[2]), Tokenizer.load(files[3])
    metrics, _ = score_test_set(
        model, src_tok, tgt_tok, config, tgt, test_src, test_tgt, tokenized
    )
    return metrics


def _verbosity():
    # The live progress bar on a terminal; one line per epoch in log files.
    import sys

    return 1 if sys.stdout.isatty() else 2


def _export_hook():
    try:
        from keras_tfm.export import export_run
    except ImportError:
        return None
    return export_run
