"""What validation BLEU chooses in a finished run: when training stops and
which epochs' weights are averaged, and the test scores of each choice.

The run's per-epoch validation loss and BLEU are read from its TensorBoard
logs. Early stopping with `--patience` is replayed on both, as Keras'
`EarlyStopping` decides (strictly better, or wait). A run stopped at epoch
S has exactly this run's first S checkpoints (the learning-rate schedule is
planned from the configured length, not from where training stops), so
each stopping point is replayed by choosing among those epochs.

For each stopping point (the run's end, and where early stopping by BLEU
with each `--patience` would have stopped, if earlier), the windows of
`candidate_windows` are scored on the run's validation pairs with
`choose_average`, as `keras-tfm train` does with `choose_average = true`.
The test split is then decoded with the run's `[evaluation]` settings for
the chosen windows and for the plain average of the last `--against`
epochs.

    python benchmarks/valid_bleu_choices.py runs/multi30k --most 5 --against 3 \\
        --patience 1 2 3 4

Prints Markdown tables and a JSON line.
"""

import argparse
import json
from pathlib import Path


def scalars(directory, tag):
    """`{epoch: value}` of an epoch scalar in a TensorBoard run folder."""
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator

    values = {}
    for path in sorted(Path(directory).glob("events.out.tfevents.*")):
        accumulator = event_accumulator.EventAccumulator(
            str(path), size_guidance={event_accumulator.TENSORS: 0}
        ).Reload()
        if tag in accumulator.Tags()["tensors"]:
            for event in accumulator.Tensors(tag):
                values[event.step + 1] = float(tf.make_ndarray(event.tensor_proto))
    return values


def stopping_epoch(values, patience, higher_is_better):
    """`(best epoch, the epoch training stops after)` under Keras'
    `EarlyStopping(patience)`, or the last epoch when it never stops."""
    best_epoch, best, wait = None, None, 0
    for epoch in sorted(values):
        value = values[epoch]
        better = best is None or (value > best if higher_is_better else value < best)
        if better:
            best_epoch, best, wait = epoch, value, 0
            continue
        wait += 1
        if patience and wait >= patience:
            return best_epoch, epoch
    return best_epoch, max(values)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--data-dir", help="default: the run's data directory")
    parser.add_argument("--most", type=int, default=5, help="most epochs averaged")
    parser.add_argument("--against", type=int, default=3, help="last N averaged")
    parser.add_argument("--patience", type=int, nargs="+", default=[4])
    args = parser.parse_args()

    from keras_tfm.data.text_files import read_parallel
    from keras_tfm.decoding.translator import make_translator
    from keras_tfm.job.average_choice import candidate_windows, choose_average
    from keras_tfm.job.evaluation import read_tokenized_reference, score_test_set
    from keras_tfm.job.finished_run import load_run_and_data
    from keras_tfm.job.run_directory import RunDirectory
    from keras_tfm.job.validation_scores import ValidationScores, valid_subset
    from keras_tfm.training import average_checkpoints

    directory = RunDirectory(args.run_dir)
    run, data_dir = load_run_and_data(args.run_dir, args.data_dir)
    config, model = run.config, run.model
    tokenizers = (run.src_tokenizer, run.tgt_tokenizer)
    src, tgt = config.data.src, config.data.tgt

    logs = directory.path / "logs" / "validation"
    loss, bleu = scalars(logs, "epoch_loss"), scalars(logs, "epoch_bleu")
    print("| epoch | valid loss | valid BLEU |\n|---:|---:|---:|")
    for epoch in sorted(loss):
        print(f"| {epoch} | {loss[epoch]:.3f} | {bleu.get(epoch, float('nan')):.2f} |")
    last = max(bleu)
    stops, bleu_stops = {}, []
    for patience in args.patience:
        for name, values, higher in (("loss", loss, False), ("bleu", bleu, True)):
            best, stop = stopping_epoch(values, patience, higher)
            stops[f"{name}, patience {patience}"] = {
                "best_epoch": best,
                "stops_after": stop,
            }
            print(f"early stopping by {name} (patience {patience}): best epoch "
                  f"{best}, stops after epoch {stop}")  # fmt: skip
            if name == "bleu":
                bleu_stops.append(stop)

    valid = read_parallel(data_dir, "valid", src, tgt)
    sources, references = valid_subset(
        *valid, config.evaluation.valid_sentences, config.training.seed
    )
    translate = make_translator(
        model, *tokenizers, config.evaluation.valid_decoding,
        batch_size=config.evaluation.batch_size,
    )  # fmt: skip
    validation = ValidationScores(translate, sources, references, tgt)
    test = read_parallel(data_dir, "test", src, tgt)
    tokenized = read_tokenized_reference(config.evaluation, data_dir, len(test[1]))

    def test_scores(label):
        metrics, _ = score_test_set(
            model, tokenizers, config.evaluation, tgt, test, tokenized
        )
        greedy = metrics.get("by_method", {}).get("greedy", {})
        row = {
            "choice": label,
            "sacrebleu": metrics["sacrebleu"],
            "tokenized_bleu": metrics.get("tokenized_bleu"),
            "greedy_tokenized_bleu": greedy.get("tokenized_bleu"),
        }
        print(json.dumps(row), flush=True)
        return row

    checkpoints = {e: directory.checkpoint(e) for e in range(1, last + 1)}
    rows = []
    for end in dict.fromkeys([last, *sorted(bleu_stops, reverse=True)]):
        within = {e: bleu[e] for e in bleu if e <= end}
        best = max(within, key=within.get)
        method = config.evaluation.valid_method
        print(f"\nstopped after epoch {end}: {len(sources)} valid pairs, {method}")
        windows = candidate_windows(end, args.most, best)
        chosen, scores = choose_average(
            model,
            {e: path for e, path in checkpoints.items() if e <= end},
            windows,
            lambda: validation.score()["val_bleu"],
        )
        row = test_scores(f"stop after {end}, epochs {chosen[0]}-{chosen[1]}")
        rows.append({**row, "valid_bleu": round(scores[chosen], 2)})
    first = max(1, last - args.against + 1)
    average_checkpoints(model, [checkpoints[e] for e in range(first, last + 1)])
    rows.append({**test_scores(f"last {args.against}, epochs {first}-{last}")})
    rows[-1]["valid_bleu"] = round(validation.score()["val_bleu"], 2)

    columns = ["choice", "valid_bleu", "sacrebleu", "tokenized_bleu"]
    columns.append("greedy_tokenized_bleu")
    print("\n| " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * (len(columns) - 1))
    for row in rows:
        print("| " + " | ".join(str(row[column]) for column in columns) + " |")
    print(json.dumps({"stops": stops, "rows": rows}))


if __name__ == "__main__":
    main()
