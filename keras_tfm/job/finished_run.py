"""Scoring and exporting a finished `keras-tfm train` run directory."""

from pathlib import Path

from keras_tfm.export.options import DEFAULT_BASE_DIR
from keras_tfm.job.run_directory import RunDirectory


def _flags(section, values):
    """`RunConfig.from_dict` overrides from command-line values."""
    return {
        f"{section}.{key}": (f"--{key.replace('_', '-')}", value)
        for key, value in values.items()
    }


def load_run(run_dir, checkpoint=None):
    """The model of a finished `keras-tfm train` run, with its tokenizers.

    `load_run(run_dir).generate(["Ein Mann fährt Fahrrad."])` translates
    with the run's `[evaluation]` decoding settings unless `options` says
    otherwise.

    Args:
        run_dir: a `keras-tfm train` run directory.
        checkpoint: a `.keras` file to load instead of `RUN_DIR/model.keras`,
            e.g. `RUN_DIR/checkpoints/epoch_010.keras`.

    Returns:
        A `keras_tfm.models.Transformer` carrying the run's tokenizers.

    Raises:
        RunDirectoryError: the run lacks its model, config or tokenizers.
    """
    run = RunDirectory(run_dir).load(model=checkpoint)
    return run.model.with_default_options(run.config.evaluation.decoding)


def load_run_and_data(run_dir, data_dir=None, overrides=None, checkpoint=None):
    """A finished run and the folder of its parallel text.

    Args:
        run_dir: a `keras-tfm train` run directory.
        data_dir: where its data is, if not where the run read it.
        overrides: `{"key": value}` of `[evaluation]` keys; None values are
            ignored.
        checkpoint: a `.keras` file to load instead of `model.keras`.

    Returns:
        `(FinishedRun, data folder)`.
    """
    from keras_tfm.job.corpus import data_directory

    directory = RunDirectory(run_dir)
    flags = _flags("evaluation", overrides or {})
    flags["data.data_dir"] = ("--data-dir", None if data_dir is None else str(data_dir))
    run = directory.load(model=checkpoint, overrides=flags)
    return run, data_directory(run.config, directory)


def evaluate_run(run_dir, data_dir=None, overrides=None, checkpoint=None, split="test"):
    """Scores a finished run's model on its test set again (or on another
    split, e.g. `valid` to choose decoding settings without the test set).

    Args:
        run_dir: a `keras-tfm train` run directory.
        data_dir: where its data is, if not where the run read it.
        overrides: `{"key": value}` of `[evaluation]` keys (`method`,
            `compare`, `beam_size`, ...); None values are ignored.
        checkpoint: a `.keras` file to score instead of `model.keras`.
        split: the files `split.{src,tgt}` scored. The run's
            `tokenized_reference` belongs to its test set, so another split
            gets tokenized BLEU only from an explicit `tokenized_reference`.

    Returns:
        The metrics `train` computes, without the training fields.
    """
    from keras_tfm.data.text_files import read_parallel
    from keras_tfm.job.evaluation import read_tokenized_reference, score_test_set

    overrides = dict(overrides or {})
    if split != "test" and overrides.get("tokenized_reference") is None:
        overrides["tokenized_reference"] = ""
    run, data_dir = load_run_and_data(run_dir, data_dir, overrides, checkpoint)
    config = run.config
    test = read_parallel(data_dir, split, config.data.src, config.data.tgt)
    tokenized = read_tokenized_reference(
        config.evaluation, data_dir, len(test[1]), split
    )
    metrics, _ = score_test_set(
        run.model,
        (run.src_tokenizer, run.tgt_tokenizer),
        config.evaluation,
        config.data.tgt,
        test,
        tokenized,
    )
    return metrics


def export_run(run_dir, name, version=None, base_dir=DEFAULT_BASE_DIR, **decoding):
    """Exports the model of a finished run directory for TF Serving.

    Decoding options (`method`, `beam_size`, `length_penalty`,
    `max_length`, `source_max_length`) come from the keyword arguments
    (None values are ignored), then from the run's `[export]` section.

    Returns:
        The path of the new version folder.
    """
    from keras_tfm.errors import ExportError
    from keras_tfm.export.model_versions import check_version_free
    from keras_tfm.export.saved_model import check_name, export_saved_model

    directory = RunDirectory(run_dir)
    directory.finished_files()
    # Fail before loading the model when the name or version cannot be used.
    check_name(name)
    if version is not None:
        check_version_free(Path(base_dir) / name, version)
    flags = _flags("export", decoding)
    try:
        run = directory.load(overrides=flags)
    except ValueError as error:
        raise ExportError(str(error)) from None
    settings = run.config.export
    return export_saved_model(
        run.model,
        run.src_tokenizer,
        run.tgt_tokenizer,
        base_dir=base_dir,
        name=name,
        version=version,
        options=settings.decoding,
        source_max_length=settings.source_max_length,
        dtype=settings.dtype,
        jit_compile=settings.jit_compile,
    )


def export_ctranslate2_run(run_dir, output, quantization=None):
    """Converts a finished run's model into a CTranslate2 model directory.

    Args:
        run_dir: a `keras-tfm train` run directory.
        output: the directory to create (it must not exist).
        quantization: None (float32) or a CTranslate2 quantization, e.g.
            "int8".

    Returns:
        The path of the new directory.
    """
    from keras_tfm.errors import ExportError

    output = Path(output)
    if output.exists():
        raise ExportError(f"{output} already exists; it is left untouched")
    try:
        from keras_tfm.export.ctranslate2 import export_ctranslate2
    except ImportError:
        raise ExportError(
            "CTranslate2 is not installed: pip install 'keras-tfm[ctranslate2]'"
        ) from None
    run = RunDirectory(run_dir).load()
    try:
        return export_ctranslate2(
            run.model, run.src_tokenizer, run.tgt_tokenizer, output, quantization
        )
    except ValueError as error:
        raise ExportError(f"cannot convert {run_dir}: {error}") from None


def draw_run_attention(run_dir, sentence, out, method="greedy", checkpoint=None):
    """Translates `sentence` with a finished run's model and writes its
    cross-attention maps (a row per decoder layer, heads side by side) to
    the PNG file `out`, atomically. Returns `(out, translation)`.

    Raises:
        RunDirectoryError: when the run cannot be loaded.
        ValueError: for a sentence without pieces.
    """
    from keras_tfm.files import write_atomic
    from keras_tfm.job.attention_maps import draw_attention, sentence_maps

    run = RunDirectory(run_dir).load(model=checkpoint)
    weights, source, target, translation = sentence_maps(
        run.model, run.src_tokenizer, run.tgt_tokenizer, sentence, method=method
    )
    png = draw_attention(weights, source, target, title=f"{sentence} -> {translation}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, png)
    return out, translation
