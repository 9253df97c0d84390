"""What the per-epoch validation scores cost, by `valid_sentences`.

    python benchmarks/validation_cost.py RUN_DIR [--data-dir DIR]
        [--sentences 250 500 1000] [--method METHOD]

Loads a finished run's model (`RUN_DIR/model.keras`, or `--checkpoint`) and
runs the training job's `ValidationScores` callback on its valid split, as
an epoch's end does: seeded subsets of each size, compiled decoding with
the run's `[evaluation]` settings (`valid_method`, or `--method`). Each
size is timed twice: the first call compiles its shapes (the first epoch
pays it), the second is what every later epoch pays. Compare with the
run's epoch time (fit's epoch lines) for the share of an epoch.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--data-dir")
    parser.add_argument("--checkpoint")
    parser.add_argument("--sentences", type=int, nargs="+", default=[250, 500, 1000])
    parser.add_argument("--method", help="default: the run's valid_method")
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(2)

    from keras_tfm.data.text_files import read_parallel
    from keras_tfm.decoding.translator import make_translator
    from keras_tfm.job.run_directory import RunDirectory
    from keras_tfm.job.train import data_directory
    from keras_tfm.job.validation_scores import ValidationScores, valid_subset

    directory = RunDirectory(args.run_dir)
    run = directory.load(model=args.checkpoint)
    config = run.config
    if args.data_dir:
        config = config.updated({"data.data_dir": args.data_dir})
    valid = read_parallel(
        data_directory(config, directory), "valid", config.data.src, config.data.tgt
    )
    evaluation = config.evaluation
    decoding = evaluation.valid_decoding
    if args.method:
        decoding = decoding.replace(method=args.method)
    print(f"{args.run_dir}: {len(valid[0])} valid pairs, {decoding.method}")
    print("| valid_sentences | first call s | later calls s | validation BLEU |")
    print("|---:|---:|---:|---:|")
    for count in args.sentences:
        # A fresh translator per size: its first call compiles, as in a run.
        translate = make_translator(
            run.model, run.src_tokenizer, run.tgt_tokenizer, decoding,
            batch_size=evaluation.batch_size,
        )  # fmt: skip
        sources, references = valid_subset(*valid, count, config.training.seed)
        callback = ValidationScores(translate, sources, references, config.data.tgt)
        seconds = []
        for _ in range(2):
            logs = {}
            began = time.perf_counter()
            callback.on_epoch_end(0, logs)
            seconds.append(time.perf_counter() - began)
        print(
            f"| {len(sources)} | {seconds[0]:.1f} | {seconds[1]:.1f} | "
            f"{logs['val_bleu']:.2f} |"
        )


if __name__ == "__main__":
    main()
