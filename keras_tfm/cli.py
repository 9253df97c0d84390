"""`keras-tfm` command line: train, export, translate."""

import argparse
import os
import sys


def _train(args):
    from keras_tfm.run import load_config, train

    config = load_config(args.config)
    train(
        config, run_dir=args.run_dir, epochs=args.epochs, strategy_name=args.strategy,
        data_dir=args.data_dir, src=args.src, tgt=args.tgt,
        export=not args.no_export,
    )
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="keras-tfm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a Transformer with model.fit")
    train.add_argument("--config", help="TOML config (default: the built-in numbers task)")
    train.add_argument("--data-dir", help="folder of {train,valid,test}.{src,tgt} files")
    train.add_argument("--src", help="source language suffix, e.g. de")
    train.add_argument("--tgt", help="target language suffix, e.g. en")
    train.add_argument("--epochs", type=int)
    train.add_argument(
        "--strategy", default="auto",
        choices=["auto", "one_device", "mirrored", "multi_worker"],
    )
    train.add_argument("--run-dir", help="where logs, checkpoints and the model go")
    train.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    train.set_defaults(handler=_train)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    from keras_tfm.data import DataError
    from keras_tfm.run import ConfigError

    try:
        return args.handler(args)
    except (DataError, ConfigError) as error:
        print(f"keras-tfm: error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:
        print(f"keras-tfm: error: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
