"""One short `keras-tfm train` run (module fixture) and what it leaves: the
resolved config, metrics that match an independent evaluation, `keras-tfm
evaluate` on it, TensorBoard serving its logs, attention pictures."""

import json
import subprocess
import sys

import numpy as np
import pytest
from support.cli_runs import (
    D_MODEL,
    MAX_LENGTH,
    WARMUP,
    checkpoint_iterations,
    our_stderr_lines,
    parse_epochs,
    run_cli,
    split_lengths,
)
from support.events import scalar_events
from support.paths import TINY
from support.processes import child_env
from support.profiles import event_counts, read_trace, step_markers
from support.schedules import paper_lr
from support.tensorboard import hparams_sessions, serve_tensorboard


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    # The paper's checkpoint averaging, over both epochs of this run, and a
    # profile of batches 3 to 4.
    config = tmp_path_factory.mktemp("tiny") / "tiny.toml"
    config.write_text(
        TINY.read_text().replace(
            "[training]", "[training]\naverage_checkpoints = 2\nprofile_steps = [3, 4]"
        )
    )
    run_dir = config.parent / "run"
    result = run_cli(
        "--config", config, "--run-dir", run_dir, "--epochs", 2, "--no-export"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return run_dir, result.stdout


def test_config_json_is_the_resolved_config(tiny_run):
    from keras_tfm.job.run_config import load_run_config

    run_dir, _ = tiny_run
    expected = load_run_config(
        run_dir.parent / "tiny.toml", overrides={"training.epochs": ("--epochs", 2)}
    )
    written = json.loads((run_dir / "config.json").read_text())
    assert written == expected.to_dict()
    assert written["training"]["epochs"] == 2
    assert written["training"]["average_checkpoints"] == 2
    # Defaults are filled in: the export section the file leaves out.
    assert written["export"] == {
        "method": "beam",
        "beam_size": 4,
        "length_penalty": 0.6,
        "max_length": MAX_LENGTH,
        "early_stopping": False,
        "source_max_length": MAX_LENGTH,
        "dtype": "float32",
        "jit_compile": False,
    }


def test_run_writes_metrics_that_match_an_independent_evaluation(tiny_run):
    import keras
    import sacrebleu

    import keras_tfm.models.transformer  # noqa: F401  (registers the layers)
    from keras_tfm.decoding.translator import make_translator
    from keras_tfm.job.run_config import load_run_config
    from keras_tfm.text.tokenizer import Tokenizer

    run_dir, stdout = tiny_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"sacrebleu", "exact_match", "sentences", "train_seconds"} <= set(metrics)
    assert metrics["sentences"] == 30 and metrics["epochs"] == 2
    assert metrics["decoding"] == "greedy" and "export" not in metrics
    assert 0.0 <= metrics["sacrebleu"] <= 100.0
    assert 0.0 <= metrics["exact_match"] <= 1.0
    assert metrics["train_seconds"] > 0
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "epoch_001.keras",
        "epoch_002.keras",
    ]
    # The backup is only for interrupted runs; a finished run removes it.
    assert not (run_dir / "backup" / "training_metadata.json").exists()
    assert (
        json.loads((run_dir / "transformer_config.json").read_text())["d_model"] == 32
    )

    # Decode the test set again with the saved model; score with sacrebleu here.
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    assert model.count_params() == metrics["parameters"]
    # The saved model holds the mean of the two epochs' weights.
    assert metrics["averaged_epochs"] == [1, 2]
    assert "averaged the weights of epochs 1 to 2\n" in stdout
    epochs = [
        keras.saving.load_model(path, compile=False).get_weights()
        for path in sorted((run_dir / "checkpoints").glob("epoch_*.keras"))
    ]
    for got, first, second in zip(model.get_weights(), *epochs):
        np.testing.assert_allclose(got, (first + second) / 2, rtol=1e-6)
    assert not np.allclose(epochs[0][0], epochs[1][0])
    src_tok = Tokenizer.load(run_dir / "tokenizers" / "src.model")
    tgt_tok = Tokenizer.load(run_dir / "tokenizers" / "tgt.model")
    translate = make_translator(
        model, src_tok, tgt_tok, load_run_config(TINY).evaluation.decoding
    )
    sources = (run_dir / "data" / "test.de").read_text("utf-8").splitlines()
    references = (run_dir / "data" / "test.en").read_text("utf-8").splitlines()
    hypotheses = translate(sources)
    exact = np.mean([h.strip() == r.strip() for h, r in zip(hypotheses, references)])
    bleu = sacrebleu.corpus_bleu(hypotheses, [references]).score
    assert metrics["exact_match"] == pytest.approx(exact)
    assert metrics["sacrebleu"] == pytest.approx(round(bleu, 2))
    bleu_text = metrics["sacrebleu"]
    summary = f"test (greedy): sacreBLEU {bleu_text}, exact match {exact:.4f}"
    assert f"{summary} on 30 sentences\n" in stdout
    for source, hypothesis, reference in list(zip(sources, hypotheses, references))[:5]:
        assert f"  {source}  ->  {hypothesis}   (reference: {reference})" in stdout

    # The last sample table was written with the last epoch's weights.
    translate = make_translator(
        keras.saving.load_model(
            run_dir / "checkpoints" / "epoch_002.keras", compile=False
        ),
        src_tok,
        tgt_tok,
        load_run_config(TINY).evaluation.decoding,
    )
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator

    samples = (
        event_accumulator.EventAccumulator(
            str(run_dir / "logs" / "samples"),
            size_guidance={event_accumulator.TENSORS: 0},
        )
        .Reload()
        .Tensors("sample_translations")
    )
    assert [e.step for e in samples] == [0, 1]
    valid_src = (run_dir / "data" / "valid.de").read_text("utf-8").splitlines()[:2]
    valid_tgt = (run_dir / "data" / "valid.en").read_text("utf-8").splitlines()[:2]
    rows = [
        f"| {s} | {r} | {h} |"
        for s, r, h in zip(valid_src, valid_tgt, translate(valid_src))
    ]
    expected = "\n".join(
        ["| source | reference | translation |", "|---|---|---|", *rows]
    )
    assert tf.make_ndarray(samples[-1].tensor_proto).item().decode() == expected


def evaluate_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "keras_tfm.cli", "evaluate", *map(str, args)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_evaluate_scores_the_saved_run_again_with_more_methods(tiny_run, tmp_path):
    from keras_tfm.text.scoring import moses_tokenize

    run_dir, _ = tiny_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    references = (run_dir / "data" / "test.en").read_text("utf-8").splitlines()
    tokenized = tmp_path / "test.tok.en"
    tokenized.write_text("\n".join(moses_tokenize(references, "en")) + "\n", "utf-8")
    result = evaluate_cli(
        run_dir, "--compare", "beam", "--beam-size", 1,
        "--tokenized-reference", tokenized,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads(result.stdout)
    lines = our_stderr_lines(result.stderr)
    assert lines[0].startswith(f"test (greedy): sacreBLEU {metrics['sacrebleu']}, ")
    assert lines[1].startswith("test (beam): ")
    # The run's own method first: the saved model decodes the test set to the
    # same translations as at the end of training.
    assert evaluated["decoding"] == "greedy"
    for key in ("sacrebleu", "exact_match", "sentences"):
        assert evaluated[key] == metrics[key]
    # Beam search with one beam is greedy search by another code path.
    beam = evaluated["by_method"]["beam"]
    assert beam["sacrebleu"] == metrics["sacrebleu"]
    assert beam["exact_match"] == metrics["exact_match"]
    assert beam["tokenized_bleu"] == evaluated["tokenized_bleu"]
    # Tokenized BLEU of the greedy translations, by an independent BLEU.
    import keras
    from support.bleu import reference_bleu

    import keras_tfm.models.transformer  # noqa: F401  (registers the layers)
    from keras_tfm.decoding.translator import make_translator
    from keras_tfm.job.run_config import load_run_config
    from keras_tfm.text.tokenizer import Tokenizer

    translate = make_translator(
        keras.saving.load_model(run_dir / "model.keras", compile=False),
        Tokenizer.load(run_dir / "tokenizers" / "src.model"),
        Tokenizer.load(run_dir / "tokenizers" / "tgt.model"),
        load_run_config(TINY).evaluation.decoding,
    )
    sources = (run_dir / "data" / "test.de").read_text("utf-8").splitlines()
    hypotheses = translate(sources)
    expected = reference_bleu(
        moses_tokenize(hypotheses, "en"), moses_tokenize(references, "en")
    )
    # The translator pads batches to fixed shapes; one sentence at a time
    # (other row and length padding) gives the same translations.
    assert [translate([s])[0] for s in sources[:3]] == hypotheses[:3]
    assert evaluated["tokenized_bleu"] == pytest.approx(expected, abs=0.005)

    # --checkpoint scores one epoch's weights instead of the averaged model.
    import sacrebleu

    last_epoch = run_dir / "checkpoints" / "epoch_002.keras"
    result = evaluate_cli(run_dir, "--checkpoint", last_epoch)
    assert result.returncode == 0, result.stderr[-3000:]
    translate = make_translator(
        keras.saving.load_model(last_epoch, compile=False),
        Tokenizer.load(run_dir / "tokenizers" / "src.model"),
        Tokenizer.load(run_dir / "tokenizers" / "tgt.model"),
        load_run_config(TINY).evaluation.decoding,
    )
    bleu = sacrebleu.corpus_bleu(translate(sources), [references]).score
    assert json.loads(result.stdout)["sacrebleu"] == pytest.approx(round(bleu, 2))

    # --split valid scores the validation set (to choose decoding settings
    # without the test set). A copy of the run whose config names tokenized
    # test references: they stay out of the valid scores (both splits have
    # 30 lines here, so nothing else would stop them).
    import shutil

    copy = tmp_path / "run_copy"
    shutil.copytree(run_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["evaluation"]["tokenized_reference"] = str(tokenized)
    (copy / "config.json").write_text(json.dumps(config))
    result = evaluate_cli(copy, "--split", "valid", "--checkpoint", last_epoch)
    assert result.returncode == 0, result.stderr[-3000:]
    valid = json.loads(result.stdout)
    assert valid["split"] == "valid"
    assert our_stderr_lines(result.stderr)[0].startswith("valid (greedy): ")
    valid_sources = (copy / "data" / "valid.de").read_text("utf-8").splitlines()
    valid_refs = (copy / "data" / "valid.en").read_text("utf-8").splitlines()
    assert valid["sentences"] == len(valid_sources) and valid_sources != sources
    assert "tokenized_bleu" not in valid
    valid_hypotheses = translate(valid_sources)
    bleu = sacrebleu.corpus_bleu(valid_hypotheses, [valid_refs]).score
    assert valid["sacrebleu"] == pytest.approx(round(bleu, 2))
    # With its own tokenized references, tokenized BLEU of the valid split.
    valid_tokenized = tmp_path / "valid.tok.en"
    valid_tokenized.write_text(
        "\n".join(moses_tokenize(valid_refs, "en")) + "\n", "utf-8"
    )
    result = evaluate_cli(
        copy, "--split", "valid", "--checkpoint", last_epoch,
        "--tokenized-reference", valid_tokenized,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    expected = reference_bleu(
        moses_tokenize(valid_hypotheses, "en"), moses_tokenize(valid_refs, "en")
    )
    assert json.loads(result.stdout)["tokenized_bleu"] == pytest.approx(
        expected, abs=0.005
    )


def test_evaluate_rejects_a_reference_of_the_wrong_length(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    reference = tmp_path / "short.tok.en"
    reference.write_text("one line\n", encoding="utf-8")
    result = evaluate_cli(run_dir, "--tokenized-reference", reference)
    assert result.returncode == 2
    assert our_stderr_lines(result.stderr) == [
        f"keras-tfm: error: {reference}: 1 lines, but the test set has 30"
    ]
    result = evaluate_cli(
        run_dir, "--split", "valid", "--tokenized-reference", reference
    )
    assert result.returncode == 2
    assert our_stderr_lines(result.stderr) == [
        f"keras-tfm: error: {reference}: 1 lines, but the valid set has 30"
    ]
    result = evaluate_cli(tmp_path / "no_run")
    assert result.returncode == 2
    assert "is not a finished training run: missing" in result.stderr


def label_token_counts(run_dir, split):
    """Non-padding labels of a split, from the run's own tokenizers."""
    tgt_len, kept = split_lengths(run_dir, split)
    return int(tgt_len[kept].sum())


def run_cli_command(*args, timeout=240):
    """`keras-tfm ARGS...` (any command) in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "keras_tfm.cli", *map(str, args)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def tensorboard_server(tiny_run):
    run_dir, _ = tiny_run
    with serve_tensorboard(run_dir / "logs", ready_run="train") as get:
        yield get


def test_tensorboard_serves_the_logged_scalars_and_samples(
    tiny_run, tensorboard_server
):
    run_dir, stdout = tiny_run
    get = tensorboard_server
    printed = parse_epochs(stdout)
    assert sorted(printed) == [1, 2]
    steps = printed[1]["steps"]

    assert {"train", "validation", "samples"} <= set(get("/data/runs"))
    tags = get("/data/plugin/scalars/tags")
    assert {
        "epoch_loss",
        "epoch_accuracy",
        "epoch_learning_rate",
        "epoch_tokens_per_second",
        "epoch_tokens",
    } <= set(tags["train"])
    assert {"epoch_loss", "epoch_accuracy", "epoch_tokens"} <= set(tags["validation"])

    def served(run, tag):
        points = get("/data/plugin/scalars/scalars", run=run, tag=tag)
        assert [step for _, step, _ in points] == [0, 1]
        values = [value for _, _, value in points]
        # Exactly the values in the event files...
        files = scalar_events(run_dir / "logs" / run, tag)
        assert values == pytest.approx([files[0], files[1]], rel=1e-7)
        return np.array(values)

    def printed_values(name):
        return np.array([printed[1][name], printed[2][name]])

    # ...and those fit printed (4 decimals, or 4 significant digits if small).
    for run, tag, name in [
        ("train", "epoch_loss", "loss"),
        ("train", "epoch_accuracy", "accuracy"),
        ("validation", "epoch_loss", "val_loss"),
        ("validation", "epoch_accuracy", "val_accuracy"),
        ("train", "epoch_tokens_per_second", "tokens_per_second"),
    ]:
        np.testing.assert_allclose(
            served(run, tag), printed_values(name), atol=5.1e-5, rtol=5e-4, err_msg=tag
        )
    loss = served("train", "epoch_loss")
    assert loss[1] < loss[0]
    assert np.all(served("train", "epoch_tokens_per_second") > 0)
    # The schedule at the optimizer's step counter, as saved with each epoch:
    # one count per batch trained (none for the call that finds the data
    # exhausted at the end of an epoch).
    iterations = [checkpoint_iterations(run_dir, epoch) for epoch in (1, 2)]
    assert iterations == [steps, 2 * steps]
    np.testing.assert_allclose(
        served("train", "epoch_learning_rate"),
        paper_lr(iterations, D_MODEL, WARMUP),
        rtol=1e-6,
    )
    # Token counts per epoch, training and validation kept apart.
    train_tokens, valid_tokens = (
        label_token_counts(run_dir, "train"),
        label_token_counts(run_dir, "valid"),
    )
    assert train_tokens != valid_tokens
    np.testing.assert_array_equal(served("train", "epoch_tokens"), [train_tokens] * 2)
    np.testing.assert_array_equal(
        served("validation", "epoch_tokens"), [valid_tokens] * 2
    )

    # The text plugin shows the sample translations of both epochs.
    assert get("/data/plugin/text/tags") == {"samples": ["sample_translations"]}
    texts = get("/data/plugin/text/text", run="samples", tag="sample_translations")
    assert [entry["step"] for entry in texts] == [0, 1]
    valid_src = (run_dir / "data" / "valid.de").read_text("utf-8").splitlines()[:2]
    valid_tgt = (run_dir / "data" / "valid.en").read_text("utf-8").splitlines()[:2]
    for entry in texts:
        html = entry["text"]
        assert "<th>source</th>" in html and "<th>translation</th>" in html
        for source, reference in zip(valid_src, valid_tgt):
            assert f"<td>{source}</td>\n<td>{reference}</td>" in html


def test_run_writes_attention_images_and_step_scalars(tiny_run):
    """Each epoch, one image per decoder layer for each of the first two
    validation sentences; every 3 optimizer steps, the step scalars."""
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator

    run_dir, stdout = tiny_run
    images = {}
    for path in sorted((run_dir / "logs" / "attention").glob("events.*")):
        accumulator = event_accumulator.EventAccumulator(
            str(path), size_guidance={event_accumulator.TENSORS: 0}
        ).Reload()
        for tag in accumulator.Tags()["tensors"]:
            for event in accumulator.Tensors(tag):
                images.setdefault(tag, {})[event.step] = tf.make_ndarray(
                    event.tensor_proto
                )
    # The tiny model has one decoder layer of two heads: one image each.
    assert sorted(images) == [
        f"attention/sentence_{s}/layer_1/head_{h}" for s in (1, 2) for h in (1, 2)
    ]
    for by_epoch in images.values():
        assert sorted(by_epoch) == [0, 1]
        width, height, png = by_epoch[1]
        picture = tf.image.decode_png(png).numpy()
        assert picture.shape[:2] == (int(height), int(width))
        # The width of a TensorBoard card (readable labels) for these short
        # sentences.
        assert picture.shape[1] == 400 and picture.shape[0] > 150
        assert picture.std() > 10  # a drawing, not a blank
    steps = {}
    for tag in ("loss", "learning_rate", "tokens_per_second", "gradient_norm"):
        steps[tag] = scalar_events(run_dir / "logs" / "steps", tag)
    # The optimizer's counter after each step.
    steps_per_epoch = parse_epochs(stdout)[1]["steps"]
    counters = list(range(1, 2 * steps_per_epoch + 1))
    assert counters[-1] == checkpoint_iterations(run_dir, 2)
    expected = [counter for counter in counters if counter % 3 == 0]
    assert len(expected) >= 4
    for tag, values in steps.items():
        assert sorted(values) == expected, tag
    np.testing.assert_allclose(
        [steps["learning_rate"][s] for s in expected],
        paper_lr(expected, D_MODEL, WARMUP),
        rtol=1e-6,
    )
    assert all(v > 0 for v in steps["gradient_norm"].values())
    assert all(0 < v < 10 for v in steps["loss"].values())


def test_cli_attention_draws_a_png(tiny_run, tmp_path):
    from matplotlib import image

    run_dir, _ = tiny_run
    out = tmp_path / "pictures" / "attention.png"
    result = run_cli_command("attention", run_dir, "vierundfünfzig", "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    translation, path = result.stdout.strip().split("\t")
    assert path == str(out) and translation
    picture = image.imread(out)
    assert picture.shape[0] > 100 and picture.std() > 0.05
    assert [p.name for p in out.parent.iterdir()] == ["attention.png"]
    empty = run_cli_command("attention", run_dir, "  ", "--out", tmp_path / "e.png")
    assert empty.returncode == 2
    assert empty.stderr.strip().endswith(
        "the sentence is empty: there is nothing to attend to"
    )
    assert not (tmp_path / "e.png").exists()


def test_validation_bleu_of_each_epoch_matches_its_checkpoint_scored_again(tiny_run):
    """The callback's validation BLEU and exact match, per epoch, against
    `evaluate_run` on that epoch's checkpoint (the valid split, greedy:
    another code path) and sacreBLEU."""
    from keras_tfm.job.finished_run import evaluate_run

    run_dir, stdout = tiny_run
    validation = run_dir / "logs" / "validation"
    bleu = scalar_events(validation, "epoch_bleu")
    exact = scalar_events(validation, "epoch_exact_match")
    seconds = scalar_events(validation, "epoch_scoring_seconds")
    assert sorted(bleu) == sorted(exact) == sorted(seconds) == [0, 1]
    for epoch in (1, 2):
        again = evaluate_run(
            run_dir,
            checkpoint=run_dir / "checkpoints" / f"epoch_{epoch:03d}.keras",
            split="valid",
            overrides={"method": "greedy"},
        )
        assert again["sentences"] == 30
        assert bleu[epoch - 1] == pytest.approx(again["sacrebleu"], abs=1e-6)
        assert exact[epoch - 1] == pytest.approx(again["exact_match"], abs=1e-6)
        assert seconds[epoch - 1] > 0
    # fit's epoch lines print it too.
    printed = parse_epochs(stdout)
    assert printed[2]["val_bleu"] == pytest.approx(bleu[1], abs=5e-5)


def test_hparams_dashboard_lists_the_run_with_its_settings_and_scores(tiny_run):
    """`tensorboard --logdir runs`, as the docs say: the run is a session
    of the HParams dashboard with its settings, final scores and the last
    points of its curves."""
    run_dir, _ = tiny_run
    config = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    session = f"{run_dir.name}/logs"
    with serve_tensorboard(run_dir.parent, ready_run=f"{session}/train") as get:
        experiment, groups = hparams_sessions(get)
    names = {h["name"] for h in experiment["hparamInfos"]}
    assert {
        "model.d_model",
        "model.num_heads",
        "training.batch_size",
        "training.warmup_steps",
        "training.label_smoothing",
        "training.average_checkpoints",
        "evaluation.method",
        "tokenizer.src_vocab_size",
    } <= names
    assert "data.data_dir" not in names and "training.verbose" not in names
    assert [g["sessions"][0]["name"] for g in groups] == [session]
    hparams = groups[0]["hparams"]
    assert hparams["model.d_model"] == config["model"]["d_model"] == 32
    assert hparams["training.batch_size"] == config["training"]["batch_size"]
    assert hparams["training.label_smoothing"] == pytest.approx(0.1)
    assert hparams["evaluation.method"] == "greedy"
    values = {
        (m["name"]["group"], m["name"]["tag"]): m["value"]
        for m in groups[0]["metricValues"]
    }
    # The final scores, in the session's own folder...
    assert values[("", "test/sacrebleu")] == pytest.approx(metrics["sacrebleu"])
    assert values[("", "test/exact_match")] == pytest.approx(metrics["exact_match"])
    assert values[("", "training/minutes")] == pytest.approx(
        metrics["train_seconds"] / 60, rel=1e-6
    )
    # ...and the last points of the epoch curves, validation BLEU among them.
    validation = run_dir / "logs" / "validation"
    last_bleu = scalar_events(validation, "epoch_bleu")[1]
    assert values[("validation", "epoch_bleu")] == pytest.approx(last_bleu)
    assert metrics["valid_bleu"] == pytest.approx(last_bleu, abs=1e-4)
    last_loss = scalar_events(validation, "epoch_loss")[1]
    assert values[("validation", "epoch_loss")] == pytest.approx(last_loss)


def test_profile_steps_trace_those_training_steps_for_the_profile_dashboard(
    tiny_run,
):
    """`profile_steps = [3, 4]`: one trace under logs/train/plugins/profile,
    as the Profile dashboard reads it, holding two executions of the
    training function and the model's products."""
    run_dir, _ = tiny_run
    space = read_trace(run_dir / "logs" / "train")
    names = event_counts(space)
    # Keras runs each training batch as one call of its traced function...
    assert names["multi_step_on_iterator"] == 2, names.most_common(10)
    # ...and each is marked as a step (the overview's step-time graph), with
    # its batch number.
    assert step_markers(space, "train") == [3, 4]
    assert sum(c for n, c in names.items() if n.endswith(":MatMul")) > 0


def test_projector_shows_the_final_embeddings_labelled_with_their_pieces(
    tiny_run, tensorboard_server
):
    """logs/projector: each embedding matrix of model.keras, row i labelled
    with piece i of its SentencePiece model (read here with sentencepiece
    itself), as TensorBoard's Projector serves them."""
    import keras
    import sentencepiece as spm
    import tensorflow as tf
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    import keras_tfm  # noqa: F401  (registers the layers)

    run_dir, _ = tiny_run
    folder = run_dir / "logs" / "projector"
    config = text_format.Parse(
        (folder / "projector_config.pbtxt").read_text(),
        projector_config_pb2.ProjectorConfig(),
    )
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    expected = {
        "source_embedding": ("src", model.get_layer("source_embedding")),
        "target_embedding": ("tgt", model.get_layer("target_embedding")),
    }
    reader = tf.train.load_checkpoint(str(folder))
    assert sorted(e.tensor_name.split("/")[0] for e in config.embeddings) == sorted(
        expected
    )
    for embedding in config.embeddings:
        name = embedding.tensor_name.split("/")[0]
        side, layer = expected[name]
        np.testing.assert_array_equal(
            reader.get_tensor(embedding.tensor_name),
            keras.ops.convert_to_numpy(layer.embeddings),
        )
        processor = spm.SentencePieceProcessor(
            model_file=str(run_dir / "tokenizers" / f"{side}.model")
        )
        labels = (folder / embedding.metadata_path).read_text("utf-8").split("\n")
        assert labels[:-1] == [
            processor.id_to_piece(i) for i in range(processor.get_piece_size())
        ]
        assert labels[-1] == ""
    assert not list((run_dir / "logs").glob(".projector*"))

    get = tensorboard_server
    runs = get("/data/plugin/projector/runs")
    assert runs == ["projector"]
    served = get("/data/plugin/projector/info", run="projector")
    assert sorted(e["tensorName"] for e in served["embeddings"]) == sorted(
        e.tensor_name for e in config.embeddings
    )
    shapes = {e["tensorName"]: e["tensorShape"] for e in served["embeddings"]}
    assert shapes["source_embedding/.ATTRIBUTES/VARIABLE_VALUE"] == [64, 32]
