"""Chooses checkpoint averaging and beam settings of a finished run on its
validation set, then scores the test set once with the choice.

For each N in `--average`, the model is the mean of the last N epochs'
checkpoints (the paper averages the last 5); each is scored on the valid
split with greedy search. The best N is then decoded with every beam size
and length penalty of the grid, again on the valid split. The test split is
translated only with the settings chosen there (and greedy), so the test
figures are not tuned on the test set.

    python benchmarks/choose_decoding.py runs/multi30k \\
        --valid-reference tok/valid.lc.norm.tok.en

Prints a Markdown table per stage and a JSON line with the choice.
"""

import argparse
import dataclasses
import json
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--data-dir", help="default: the run's data directory")
    parser.add_argument("--average", type=int, nargs="+", default=[1, 3, 5, 7, 9])
    parser.add_argument("--beam-sizes", type=int, nargs="+", default=[4, 6])
    parser.add_argument(
        "--length-penalties", type=float, nargs="+", default=[0.6, 1.0, 1.4]
    )
    parser.add_argument(
        "--valid-reference",
        help="tokenized valid references (relative to the data directory): "
        "choose by tokenized BLEU instead of sacreBLEU",
    )
    args = parser.parse_args()

    from keras_tfm.data.text_files import read_parallel
    from keras_tfm.job.evaluation import read_tokenized_reference, score_test_set
    from keras_tfm.job.finished_run import load_run_and_data
    from keras_tfm.job.run_directory import RunDirectory
    from keras_tfm.training import average_checkpoints

    directory = RunDirectory(args.run_dir)
    run, data_dir = load_run_and_data(args.run_dir, args.data_dir)
    config = run.config
    src, tgt = config.data.src, config.data.tgt
    valid = read_parallel(data_dir, "valid", src, tgt)
    test = read_parallel(data_dir, "test", src, tgt)
    evaluation = dataclasses.replace(config.evaluation, compare=())
    valid_tokenized = read_tokenized_reference(
        dataclasses.replace(evaluation, tokenized_reference=args.valid_reference),
        data_dir,
        len(valid[1]),
        "valid",
    )
    test_tokenized = read_tokenized_reference(evaluation, data_dir, len(test[1]))
    key = "tokenized_bleu" if valid_tokenized else "sacrebleu"
    tokenizers = (run.src_tokenizer, run.tgt_tokenizer)

    # The run's last epoch, from its metrics (a reused directory may hold
    # checkpoints of a longer earlier run).
    last = json.loads((directory.path / "metrics.json").read_text())["epochs"]
    epochs = [e for e in range(1, last + 1) if directory.checkpoint(e).is_file()]
    if not epochs:
        sys.exit(f"{directory.checkpoints}: no epoch checkpoints")
    print(f"run {args.run_dir}: {last} epochs; choosing on valid by {key}")

    def score(data, tokenized, **decoding):
        settings = dataclasses.replace(evaluation, **decoding)
        metrics, _ = score_test_set(
            run.model, tokenizers, settings, tgt, data, tokenized
        )
        return metrics

    def average(count):
        average_checkpoints(
            run.model, [directory.checkpoint(e) for e in epochs[-count:]]
        )

    print("\n| last N epochs averaged | valid greedy sacreBLEU | tokenized BLEU |")
    print("|---:|---:|---:|")
    by_count = {}
    for count in [c for c in args.average if c <= len(epochs)] or [len(epochs)]:
        average(count)
        metrics = score(valid, valid_tokenized, method="greedy")
        by_count[count] = metrics[key]
        print(
            f"| {count} | {metrics['sacrebleu']} | "
            f"{metrics.get('tokenized_bleu', '-')} |",
            flush=True,
        )
    count = max(by_count, key=by_count.get)
    average(count)

    print(f"\nN = {count}:")
    print("| beams | length penalty | valid sacreBLEU | tokenized BLEU | seconds |")
    print("|---:|---:|---:|---:|---:|")
    by_beam = {}
    for beams in args.beam_sizes:
        for penalty in args.length_penalties:
            started = time.perf_counter()
            metrics = score(
                valid,
                valid_tokenized,
                method="beam",
                beam_size=beams,
                length_penalty=penalty,
            )
            by_beam[(beams, penalty)] = metrics[key]
            print(
                f"| {beams} | {penalty} | {metrics['sacrebleu']} | "
                f"{metrics.get('tokenized_bleu', '-')} | "
                f"{time.perf_counter() - started:.0f} |",
                flush=True,
            )
    beams, penalty = max(by_beam, key=by_beam.get)

    beam = score(
        test,
        test_tokenized,
        method="beam",
        beam_size=beams,
        length_penalty=penalty,
    )
    greedy = score(test, test_tokenized, method="greedy")
    print(
        f"\ntest split with N = {count}, {beams} beams, length penalty {penalty}: "
        f"beam sacreBLEU {beam['sacrebleu']}, tokenized BLEU "
        f"{beam.get('tokenized_bleu', '-')}; greedy sacreBLEU {greedy['sacrebleu']}, "
        f"tokenized BLEU {greedy.get('tokenized_bleu', '-')}"
    )
    print(
        json.dumps(
            {
                "average": count,
                "beam_size": beams,
                "length_penalty": penalty,
                "test_beam": beam,
                "test_greedy": greedy,
            }
        )
    )


if __name__ == "__main__":
    main()
