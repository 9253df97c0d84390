"""`keras-tfm` command line: train, evaluate, export, translate, attention."""

import argparse
import contextlib
import dataclasses
import os
import sys


def _train(args):
    from keras_tfm.job.run_config import load_run_config

    config = load_run_config(
        args.config,
        overrides={
            "data.data_dir": ("--data-dir", args.data_dir),
            "data.src": ("--src", args.src),
            "data.tgt": ("--tgt", args.tgt),
            "training.epochs": ("--epochs", args.epochs),
            "training.max_steps": ("--max-steps", args.max_steps),
            "training.accumulate_steps": ("--accumulate-steps", args.accumulate_steps),
        },
    )
    if args.print_config:
        sys.stdout.write(config.to_toml())
        return 0
    from keras_tfm.job.train import train

    train(
        config,
        run_dir=args.run_dir,
        strategy_name=args.strategy,
        export=not args.no_export,
    )
    return 0


def _attention(args):
    from keras_tfm.job.finished_run import draw_run_attention

    if not args.sentence.strip():
        raise _UsageError("the sentence is empty: there is nothing to attend to")
    out, translation = draw_run_attention(
        args.run_dir, args.sentence, args.out, args.method, args.checkpoint
    )
    print(f"{translation}\t{out}")
    return 0


def _evaluate(args):
    import json

    from keras_tfm.job.evaluation import score_lines
    from keras_tfm.job.finished_run import evaluate_run

    compare = args.compare.split(",") if args.compare else None
    metrics = evaluate_run(
        args.run_dir,
        data_dir=args.data_dir,
        checkpoint=args.checkpoint,
        split=args.split,
        overrides={
            **_decoding_flags(args),
            "compare": compare,
            "tokenized_reference": args.tokenized_reference,
        },
    )
    metrics = {"split": args.split, **metrics}
    for line in score_lines(metrics, args.split):
        print(line, file=sys.stderr)
    print(json.dumps(metrics, indent=2))
    return 0


def _export(args):
    if args.format == "ctranslate2":
        from keras_tfm.job.finished_run import export_ctranslate2_run

        if not args.output:
            raise _UsageError("--format ctranslate2 needs --output DIR")
        print(export_ctranslate2_run(args.run_dir, args.output, args.quantization))
        return 0
    if not args.name:
        raise _UsageError("the SavedModel export needs --name NAME")
    from keras_tfm.job.finished_run import export_run

    path = export_run(
        args.run_dir,
        name=args.name,
        version=args.version,
        base_dir=args.base_dir,
        **_decoding_flags(args),
        dtype=args.dtype,
        jit_compile=args.jit_compile,
    )
    print(path)
    return 0


def _translate(args):
    # Only TensorFlow and TensorFlow Text: the SavedModel holds the whole
    # pipeline, no Keras model is rebuilt.
    from keras_tfm.export.model_versions import find_saved_model

    path = find_saved_model(args.model)
    if args.batch_size < 1:
        raise _UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.sentences:
        sentences = [s.encode("utf-8", "surrogateescape") for s in args.sentences]
    else:
        sentences = [line.rstrip(b"\r\n") for line in sys.stdin.buffer]

    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)

    try:
        loaded = tf.saved_model.load(str(path))
        serve = loaded.signatures["serving_default"]
    except (OSError, KeyError, ValueError, tf.errors.OpError) as error:
        message = " ".join(str(error).split())  # one line
        raise _UsageError(f"cannot load the SavedModel at {path}: {message}") from None
    batches = [
        tf.constant(sentences[start : start + args.batch_size], dtype=tf.string)
        for start in range(0, len(sentences), args.batch_size)
    ]
    profile = contextlib.nullcontext(lambda number: contextlib.nullcontext())
    if args.profile and batches:
        # The first call optimises the graph: run it before the trace, so
        # that the trace shows decoding.
        serve(sentences=batches[0])
        profile = _profiling(args.profile)
    out = sys.stdout
    with profile as mark_step:
        for number, batch in enumerate(batches, start=1):
            with mark_step(number):
                outputs = serve(sentences=batch)
            for text, score in zip(
                outputs["translations"].numpy(), outputs["scores"].numpy()
            ):
                line = text.decode("utf-8", "replace")
                out.write(f"{line}\t{score:.4f}\n" if args.scores else line + "\n")
            out.flush()
    return 0


@contextlib.contextmanager
def _profiling(logdir):
    """TensorFlow's profiler on, writing to `logdir/plugins/profile` for
    TensorBoard's Profile dashboard; yields `mark_step(number)`, a context
    that marks one batch as a step of the trace."""
    import tensorflow as tf

    def mark_step(number):
        return tf.profiler.experimental.Trace("translate", step_num=number, _r=1)

    tf.profiler.experimental.start(str(logdir))
    try:
        yield mark_step
    finally:
        tf.profiler.experimental.stop()


class _UsageError(Exception):
    """A bad command line argument found after parsing."""


def _user_errors():
    """Exception classes reported as `keras-tfm: error: ...` with exit code 2."""
    from keras_tfm.errors import KerasTfmError

    return (_UsageError, KerasTfmError)


def _add_decoding_flags(parser, section):
    """`--method`, `--beam-size`, ... : one flag per `DecodingOptions`
    field, with its help text; unset flags keep the run's `[section]`
    setting, whose default is the field's."""
    from keras_tfm.decoding.options import DecodingOptions
    from keras_tfm.decoding.searches import DETERMINISTIC_METHODS

    for field in dataclasses.fields(DecodingOptions):
        default = "the model's" if field.default is None else field.default
        arguments = dict(
            help=f"{field.metadata['help']}; default: the run's [{section}] "
            f"setting, else {default}"
        )
        if field.name == "method":
            arguments["choices"] = DETERMINISTIC_METHODS
        elif field.type is bool:
            arguments["action"] = argparse.BooleanOptionalAction
        else:
            arguments["type"] = float if field.type is float else int
        parser.add_argument("--" + field.name.replace("_", "-"), **arguments)


def _decoding_flags(args):
    """The values of the `DecodingOptions` flags (None where unset)."""
    from keras_tfm.decoding.options import DecodingOptions

    return {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(DecodingOptions)
    }


def build_parser():
    from keras_tfm.decoding.searches import DETERMINISTIC_METHODS
    from keras_tfm.export.options import DEFAULT_BASE_DIR, EXPORT_DTYPES
    from keras_tfm.training.strategy import STRATEGY_NAMES

    parser = argparse.ArgumentParser(prog="keras-tfm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a Transformer with model.fit")
    train.add_argument(
        "--config", help="TOML config (default: the built-in numbers task)"
    )
    train.add_argument(
        "--data-dir", help="folder of {train,valid,test}.{src,tgt} files"
    )
    train.add_argument("--src", help="source language suffix, e.g. de")
    train.add_argument("--tgt", help="target language suffix, e.g. en")
    train.add_argument("--epochs", type=int)
    train.add_argument(
        "--accumulate-steps",
        type=int,
        help="batches per optimizer step (exact gradient accumulation)",
    )
    train.add_argument(
        "--max-steps",
        type=int,
        help="stop after this many optimizer steps, then evaluate and export",
    )
    train.add_argument(
        "--strategy",
        default=STRATEGY_NAMES[0],
        choices=STRATEGY_NAMES,
    )
    train.add_argument("--run-dir", help="where logs, checkpoints and the model go")
    train.add_argument(
        "--no-export", action="store_true", help="skip the SavedModel export"
    )
    train.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (defaults filled in) as TOML and exit",
    )
    train.set_defaults(handler=_train)

    attention = commands.add_parser(
        "attention",
        help="draw a sentence's cross-attention maps (PNG) with a trained run",
    )
    attention.add_argument(
        "run_dir", metavar="RUN_DIR", help="a `keras-tfm train` run directory"
    )
    attention.add_argument("sentence", help="the source sentence")
    attention.add_argument("--out", required=True, help="the PNG file to write")
    attention.add_argument("--method", choices=DETERMINISTIC_METHODS, default="greedy")
    attention.add_argument(
        "--checkpoint", help="a .keras file to use instead of RUN_DIR/model.keras"
    )
    attention.set_defaults(handler=_attention)

    evaluate = commands.add_parser(
        "evaluate",
        help="score a trained run on its test set (or --split valid) again "
        "(JSON metrics on stdout)",
    )
    evaluate.add_argument(
        "run_dir", metavar="RUN_DIR", help="a `keras-tfm train` run directory"
    )
    evaluate.add_argument("--data-dir", help="default: the run's data directory")
    evaluate.add_argument(
        "--split",
        choices=["test", "valid"],
        default="test",
        help="valid: choose decoding settings without touching the test set",
    )
    evaluate.add_argument(
        "--checkpoint",
        help="a .keras file to score instead of RUN_DIR/model.keras, e.g. "
        "RUN_DIR/checkpoints/epoch_010.keras",
    )
    _add_decoding_flags(evaluate, "evaluation")
    evaluate.add_argument(
        "--compare", help="more methods to score, comma-separated, e.g. greedy"
    )
    evaluate.add_argument(
        "--tokenized-reference",
        help="lowercased Moses-tokenized references of the scored split, relative to "
        "the data directory (adds tokenized BLEU)",
    )
    evaluate.set_defaults(handler=_evaluate)

    export = commands.add_parser(
        "export",
        help="export a trained run as a SavedModel for TF Serving, or as a "
        "CTranslate2 model",
    )
    export.add_argument(
        "run_dir", metavar="RUN_DIR", help="a `keras-tfm train` run directory"
    )
    export.add_argument(
        "--format",
        choices=["saved_model", "ctranslate2"],
        default="saved_model",
        help="default: saved_model",
    )
    export.add_argument(
        "--name", help="SavedModel: model name (folder under --base-dir)"
    )
    export.add_argument("--output", help="ctranslate2: the model directory to create")
    export.add_argument(
        "--quantization",
        help="ctranslate2: weight type, e.g. int8 (default: float32)",
    )
    export.add_argument(
        "--version",
        type=int,
        help="integer version (default: 1 + the highest existing)",
    )
    export.add_argument(
        "--base-dir", default=DEFAULT_BASE_DIR, help=f"default: {DEFAULT_BASE_DIR}"
    )
    _add_decoding_flags(export, "export")
    export.add_argument(
        "--dtype",
        choices=EXPORT_DTYPES,
        help="the SavedModel's weights and arithmetic; default: the run's "
        f"[export] setting, else {EXPORT_DTYPES[0]}",
    )
    export.add_argument(
        "--jit-compile",
        action="store_const",
        const=True,
        help="XLA-compiled decoding in the SavedModel (TF Serving needs "
        "--xla_cpu_compilation_enabled)",
    )
    export.set_defaults(handler=_export)

    translate = commands.add_parser(
        "translate", help="translate with an exported SavedModel (no Keras needed)"
    )
    translate.add_argument(
        "--model",
        required=True,
        help="a SavedModel version folder (saved_models/NAME/VERSION), or a model "
        "folder (saved_models/NAME: its highest version)",
    )
    translate.add_argument(
        "sentences",
        nargs="*",
        metavar="SENTENCE",
        help="sentences to translate; none: one per line from stdin",
    )
    translate.add_argument("--batch-size", type=int, default=64)
    translate.add_argument(
        "--scores",
        action="store_true",
        help="print a tab and the score after each line",
    )
    translate.add_argument(
        "--profile",
        metavar="LOGDIR",
        help="trace the translation (each batch a step) for TensorBoard's Profile "
        "dashboard: tensorboard --logdir LOGDIR",
    )
    translate.set_defaults(handler=_translate)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)

    try:
        return args.handler(args)
    except FloatingPointError as error:
        print(f"keras-tfm: error: {error}", file=sys.stderr)
        return 3
    except Exception as error:
        if not isinstance(error, _user_errors()):
            raise
        print(f"keras-tfm: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
