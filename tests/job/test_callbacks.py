"""Schedule, loss, metrics and callbacks of `keras_tfm.training`, against NumPy."""

import json
import tomllib
from importlib import resources
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from support.adam import adam_initial, adam_steps, numpy_adam
from support.events import all_scalar_events
from support.fitting import compiled, copy_task, random_batch, small_model
from support.paths import ROOT
from support.schedules import paper_lr

from keras_tfm import training
from keras_tfm.job import callbacks
from keras_tfm.job.run_config import (
    RunConfig,
    load_run_config,
)

CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
flags\t\t: fpu sse2 avx2 fma {extra}

processor\t: 1
vendor_id\t: {vendor}
flags\t\t: fpu sse2 avx2 fma {extra}
"""


@pytest.mark.parametrize(
    "vendor, extra, expected",
    [
        ("GenuineIntel", "avx512f amx_bf16 amx_tile", True),
        ("GenuineIntel", "avx512f avx512_bf16", True),
        ("AuthenticAMD", "vaes", False),
        ("AuthenticAMD", "avx512f avx512_fp16", False),
    ],
)
def test_native_bfloat16_is_read_from_the_cpu_flags(vendor, extra, expected):
    text = CPUINFO.format(vendor=vendor, extra=extra)
    assert training.cpu_has_native_bfloat16(text) is expected
    assert training.cpu_has_native_bfloat16("processor\t: 0\n") is None


def test_native_bfloat16_of_this_machine():
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    words = set(text.split())
    expected = "amx_bf16" in words or "avx512_bf16" in words
    assert training.cpu_has_native_bfloat16() is expected
    assert training.bfloat16_is_emulated() is (
        not expected and not tf.config.list_physical_devices("GPU")
    )


@pytest.mark.parametrize("d_model,warmup,scale", [(512, 4000, 1.0), (32, 20, 2.5)])
def test_schedule_matches_paper_formula(d_model, warmup, scale):
    schedule = training.TransformerSchedule(d_model, warmup, scale)
    iterations = np.concatenate(
        [np.arange(0, 3 * warmup), np.array([10 * warmup, 100 * warmup, 10**6])]
    )
    got = keras.ops.convert_to_numpy(schedule(iterations))
    expected = paper_lr(iterations, d_model, warmup, scale)
    np.testing.assert_allclose(got, expected, rtol=2e-6)
    # Linear warmup up to step == warmup_steps (iteration warmup - 1), then decay.
    assert int(np.argmax(got)) == warmup - 1
    np.testing.assert_allclose(got.max(), scale * (d_model * warmup) ** -0.5, rtol=2e-6)
    assert np.all(np.diff(got[:warmup]) > 0)
    assert np.all(np.diff(got[warmup - 1 :]) < 0)
    # Step 1 of the warmup: scale * d^-0.5 * warmup^-1.5.
    np.testing.assert_allclose(got[0], scale * d_model**-0.5 * warmup**-1.5, rtol=2e-6)


def test_schedule_cooldown_takes_the_rate_linearly_to_zero():
    total, cooldown = 100, 30
    schedule = training.TransformerSchedule(
        64, warmup_steps=10, scale=0.5, total_steps=total, cooldown_steps=cooldown
    )
    iterations = np.arange(0, 120)
    got = keras.ops.convert_to_numpy(schedule(iterations)).astype(np.float64)
    step = iterations + 1.0
    factor = np.clip((total + 1.0 - step) / cooldown, 0.0, 1.0)
    np.testing.assert_allclose(
        got, paper_lr(iterations, 64, 10, 0.5) * factor, rtol=2e-6, atol=1e-12
    )
    plain = paper_lr(iterations, 64, 10, 0.5)
    # Untouched up to step T - C + 1 (iteration 70), 1/C of the curve at the
    # last step (iteration 99), zero after it.
    np.testing.assert_allclose(got[:71], plain[:71], rtol=2e-6)
    assert got[71] < plain[71]
    np.testing.assert_allclose(got[99], plain[99] / cooldown, rtol=2e-6)
    assert np.all(got[100:] == 0.0)
    assert np.all(np.diff(got[70:101]) < 0)


def test_schedule_drives_the_optimizer_learning_rate():
    optimizer = training.make_optimizer(64, warmup_steps=100, scale=0.5)
    assert optimizer.beta_1 == 0.9 and optimizer.beta_2 == 0.98
    assert optimizer.epsilon == 1e-9
    for iteration in (0, 1, 57, 99, 100, 5000):
        optimizer.iterations.assign(iteration)
        got = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        np.testing.assert_allclose(got, paper_lr(iteration, 64, 100, 0.5), rtol=2e-6)


def test_schedule_config_round_trip():
    schedule = training.TransformerSchedule(
        128, warmup_steps=400, scale=0.7, total_steps=1900, cooldown_steps=500
    )
    config = schedule.get_config()
    assert config == {
        "d_model": 128,
        "warmup_steps": 400,
        "scale": 0.7,
        "total_steps": 1900,
        "cooldown_steps": 500,
    }
    rebuilt = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(schedule)))
    )
    assert type(rebuilt) is training.TransformerSchedule
    assert rebuilt.get_config() == config
    steps = np.arange(0, 2000, 37)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(rebuilt(steps)),
        keras.ops.convert_to_numpy(schedule(steps)),
    )
    # Inside a serialized optimizer as well.
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    clone = keras.optimizers.Adam.from_config(optimizer.get_config())
    assert isinstance(clone._learning_rate, training.TransformerSchedule)
    assert clone._learning_rate.get_config() == config


@pytest.mark.parametrize(
    "args",
    [
        (0, 10, 1.0),
        (16, 0, 1.0),
        (16, 10, 0.0),
        (16, 10, 1.0, None, 5),  # a cooldown needs the run's length
        (16, 10, 1.0, 4, 5),  # longer than the run
        (16, 10, 1.0, 100, -1),
    ],
)
def test_schedule_rejects_bad_arguments(args):
    with pytest.raises(ValueError, match="TransformerSchedule"):
        training.TransformerSchedule(*args)


def smoothed_ce_reference(labels, logits, eps):
    """Smoothed one-hot over the whole vocabulary, mean over non-pad tokens."""
    logits = logits.astype(np.float64)
    vocab = logits.shape[-1]
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    onehot = np.eye(vocab)[labels]
    target = (1.0 - eps) * onehot + eps / vocab
    per_token = -(target * log_probs).sum(axis=-1)
    mask = labels != 0
    return per_token[mask].sum() / mask.sum()


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothed_loss_matches_numpy(eps):
    labels, logits = random_batch(0)
    loss = training.LabelSmoothedCrossEntropy(eps)
    got = float(keras.ops.convert_to_numpy(loss(labels, logits)))
    expected = smoothed_ce_reference(labels, logits, eps)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Logits at padding positions do not matter.
    noisy = logits.copy()
    noisy[labels == 0] = 1e3
    np.testing.assert_allclose(
        float(keras.ops.convert_to_numpy(loss(labels, noisy))), expected, rtol=1e-5
    )


def test_unsmoothed_loss_is_masked_sparse_cross_entropy():
    labels, logits = random_batch(1)
    got = float(
        keras.ops.convert_to_numpy(
            training.LabelSmoothedCrossEntropy(0.0)(labels, logits)
        )
    )
    per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits).numpy()
    mask = labels != 0
    np.testing.assert_allclose(got, per_token[mask].mean(), rtol=1e-5)
    np.testing.assert_allclose(
        got, smoothed_ce_reference(labels, logits, 0.0), rtol=1e-5
    )


def test_loss_config_and_validation():
    loss = training.LabelSmoothedCrossEntropy(0.2)
    rebuilt = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(rebuilt, training.LabelSmoothedCrossEntropy)
    assert rebuilt.label_smoothing == 0.2 and rebuilt.reduction == "sum"
    with pytest.raises(ValueError, match="label_smoothing"):
        training.LabelSmoothedCrossEntropy(1.0)


def test_masked_accuracy_and_token_count_match_numpy():
    accuracy, tokens = training.MaskedAccuracy(), training.TokenCount()
    correct = total = 0
    for seed in (2, 3):
        labels, logits = random_batch(seed, vocab=4)  # small vocab: many hits
        accuracy.update_state(labels, logits)
        tokens.update_state(labels, logits)
        mask = labels != 0
        correct += int(((logits.argmax(-1) == labels) & mask).sum())
        total += int(mask.sum())
    assert 0 < correct < total
    np.testing.assert_allclose(
        float(keras.ops.convert_to_numpy(accuracy.result())), correct / total, rtol=1e-6
    )
    assert float(keras.ops.convert_to_numpy(tokens.result())) == total
    accuracy.reset_state()
    tokens.reset_state()
    assert float(keras.ops.convert_to_numpy(accuracy.result())) == 0.0
    assert float(keras.ops.convert_to_numpy(tokens.result())) == 0.0


def test_fit_logs_learning_rate_throughput_and_epoch_token_counts():
    x, y = copy_task()
    xv, yv = copy_task(rows=8, seed=1)
    model = compiled(small_model())
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=3,
        validation_data=(xv, yv),
        verbose=0,
        callbacks=[callbacks.ThroughputAndLearningRate()],
    ).history
    steps_per_epoch = 6
    assert int(model.optimizer.iterations.numpy()) == 3 * steps_per_epoch
    # The rate the next step would use: iteration k -> step k + 1.
    expected_lr = paper_lr(steps_per_epoch * np.arange(1, 4), 16, 5)
    np.testing.assert_allclose(history["learning_rate"], expected_lr, rtol=2e-6)
    assert all(np.isfinite(v) and v > 0 for v in history["tokens_per_second"])
    # TokenCount is per epoch and per split: training and validation labels.
    assert history["tokens"] == [float((y != 0).sum())] * 3
    assert history["val_tokens"] == [float((yv != 0).sum())] * 3


def test_tokens_per_second_counts_steps_after_the_first(monkeypatch):
    """With a clock that ticks 1 s per reading, throughput is exact."""
    ticks = iter(range(1000))
    monkeypatch.setattr(
        callbacks, "time", type("Clock", (), {"perf_counter": lambda: next(ticks)})
    )
    x, y = copy_task(rows=40)
    model = compiled(small_model())
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[callbacks.ThroughputAndLearningRate()],
    ).history
    per_batch = (y != 0).reshape(5, 8, -1).sum(axis=(1, 2))
    # Timed from the end of step 1 to the end of step 5: 4 ticks, 4 batches.
    expected = per_batch[1:].sum() / 4.0
    np.testing.assert_allclose(history["tokens_per_second"], [expected] * 2, rtol=1e-6)


def test_tokens_per_second_is_left_out_for_a_single_step_epoch():
    x, y = copy_task(rows=8)
    model = compiled(small_model())
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        verbose=0,
        callbacks=[callbacks.ThroughputAndLearningRate()],
    ).history
    assert "tokens_per_second" not in history
    np.testing.assert_allclose(
        history["learning_rate"], paper_lr([1, 2], 16, 5), rtol=2e-6
    )


@pytest.mark.parametrize(
    "epoch_seconds, budget, expected_epochs",
    [
        # After epoch k, 10k s have passed and one more epoch would end at
        # 10(k + 1): 4 epochs fit in 45 s (a 5th would end at 50).
        ([10] * 9, 45, 4),
        ([10] * 9, 50, 5),  # ending exactly on the budget is allowed
        ([10] * 9, 1000, 9),  # never reached: all epochs run
        # Judged by the slowest epoch so far: after a 30 s first epoch
        # (tracing), 55 + 30 > 80 after epoch 6, though a 5 s epoch would fit.
        ([30, 5, 5, 5, 5, 5, 5, 5, 5], 80, 6),
        # The same for a slow epoch later on: 30 s passed, 20 more would be 50.
        ([5, 5, 20, 5, 5, 5, 5, 5, 5], 49, 3),
        ([5, 5, 20, 5, 5, 5, 5, 5, 5], 50, 4),
    ],
)
def test_time_limit_stops_before_an_epoch_that_would_overrun(
    monkeypatch, epoch_seconds, budget, expected_epochs
):
    """A fake clock advanced by each epoch's duration: the stop is exact."""
    now = [0.0]
    monkeypatch.setattr(
        callbacks, "time", type("Clock", (), {"perf_counter": lambda: now[0]})
    )
    durations = iter(epoch_seconds)

    class EpochTakes(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            now[0] += next(durations)

    limit = callbacks.TimeLimit(budget)
    x, y = copy_task(rows=8)
    model = compiled(small_model())
    history = model.fit(
        x, y, batch_size=8, epochs=9, verbose=0, callbacks=[EpochTakes(), limit]
    )
    assert len(history.epoch) == expected_epochs
    expected_stop = expected_epochs if expected_epochs < 9 else None
    assert limit.stopped_after_epoch == expected_stop
    with pytest.raises(ValueError, match="seconds must be > 0"):
        callbacks.TimeLimit(0)


def test_average_checkpoints_is_the_mean_of_the_saved_weights(tmp_path):
    model = small_model()
    model.build((None, None))
    rng = np.random.default_rng(0)
    saved = []
    for index in range(3):
        weights = [
            rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()
        ]
        model.set_weights(weights)
        model.save(tmp_path / f"epoch_{index}.keras")
        saved.append(weights)
    target = small_model()
    target.build((None, None))
    training.average_checkpoints(
        target, [tmp_path / f"epoch_{i}.keras" for i in (1, 2)]
    )
    for got, first, second in zip(target.get_weights(), saved[1], saved[2]):
        np.testing.assert_allclose(got, (first + second) / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="no checkpoints"):
        training.average_checkpoints(target, [])


def test_stop_on_nan_stops_at_the_first_bad_step(capsys):
    x, y = copy_task()
    model = compiled(small_model())
    model.build((None, None))
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    guard = callbacks.StopOnNaN()
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[guard])
    assert guard.message is not None
    assert guard.message.startswith(
        "training stopped: the loss became nan at step 1 of epoch 1;"
    )
    assert guard.message in capsys.readouterr().out
    assert int(model.optimizer.iterations.numpy()) == 1
    assert len(history.history["loss"]) == 1


def test_stop_on_nan_with_a_huge_learning_rate_names_step_and_epoch():
    x, y = copy_task()
    model = compiled(small_model(), scale=1e30)
    guard = callbacks.StopOnNaN()
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[guard])
    assert guard.message is not None
    steps = int(model.optimizer.iterations.numpy())
    assert 1 <= steps < 18
    step_in_epoch, epoch = (steps - 1) % 6 + 1, (steps - 1) // 6 + 1
    assert f"at step {step_in_epoch} of epoch {epoch};" in guard.message


def test_backup_epoch_counts_epochs_finished_by_backup_and_restore(tmp_path):
    assert callbacks.backup_epoch(tmp_path / "nothing") is None
    x, y = copy_task()
    backup_dir = tmp_path / "backup"
    for epochs in (1, 3):
        model = compiled(small_model())
        model.fit(
            x,
            y,
            batch_size=16,
            epochs=epochs,
            verbose=0,
            callbacks=[
                keras.callbacks.BackupAndRestore(
                    str(backup_dir), delete_checkpoint=False
                )
            ],
        )
        assert callbacks.backup_epoch(backup_dir) == epochs
    # A fresh fit resumes after those epochs, so it runs only the missing one.
    model = compiled(small_model())
    seen = []
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=4,
        verbose=0,
        callbacks=[
            keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, _: seen.append(e)),
            keras.callbacks.BackupAndRestore(str(backup_dir)),
        ],
    )
    assert seen == [3]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "training_metadata.json").write_text("{")
    assert callbacks.backup_epoch(tmp_path / "broken") is None


def test_make_callbacks_order_and_paths(tmp_path):
    made, guard = callbacks.make_callbacks(str(tmp_path), patience=3)
    kinds = [type(c).__name__ for c in made]
    assert kinds == [
        "StopOnNaN",
        "ThroughputAndLearningRate",
        "TensorBoard",
        "ModelCheckpoint",
        "BackupAndRestore",
        "EarlyStopping",
    ]
    assert made[0] is guard
    assert made[2].log_dir == str(tmp_path / "logs")
    assert made[4].backup_dir == str(tmp_path / "backup")
    assert made[5].patience == 3 and made[5].restore_best_weights
    made, _ = callbacks.make_callbacks(str(tmp_path), patience=0)
    assert "EarlyStopping" not in [type(c).__name__ for c in made]
    made, _ = callbacks.make_callbacks(str(tmp_path), time_limit=60.0)
    assert type(made[1]).__name__ == "TimeLimit"
    assert made[1].seconds == 60.0


def test_sample_translations_writes_a_markdown_table(tmp_path):
    callback = callbacks.SampleTranslations(
        lambda sources: [s.upper() for s in sources],
        ["eins", "zwei"],
        ["one", "two"],
        str(tmp_path),
    )
    callback.on_epoch_end(0)
    callback.on_epoch_end(1)
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(
        str(tmp_path / "samples"), size_guidance={event_accumulator.TENSORS: 0}
    ).Reload()
    events = accumulator.Tensors("sample_translations")
    assert [e.step for e in events] == [0, 1]
    text = tf.make_ndarray(events[1].tensor_proto).item().decode()
    assert text == (
        "| source | reference | translation |\n|---|---|---|\n"
        "| eins | one | EINS |\n| zwei | two | ZWEI |"
    )


ADAM_INITIAL = adam_initial()


def run_adam(optimizer, steps):
    """Applies `steps` (dense kernel/bias gradients, IndexedSlices rows)."""
    variables = [keras.Variable(ADAM_INITIAL[n], name=n) for n in ADAM_INITIAL]
    optimizer.build(variables)

    @tf.function
    def step(kernel, bias, rows, row_grads):
        embedding_grad = tf.IndexedSlices(row_grads, rows, (7, 2))
        optimizer.apply([kernel, bias, embedding_grad], variables)

    history = []
    for grads in steps:
        step(**grads)
        history.append({v.name: v.numpy() for v in variables})
    return history, step


def graph_op_types(function, grads):
    """Op types in a traced function's graph and the functions it calls."""
    graph_def = function.get_concrete_function(**grads).graph.as_graph_def()
    types = [node.op for node in graph_def.node]
    for library_function in graph_def.library.function:
        types += [node.op for node in library_function.node_def]
    return types


def test_adam_matches_numpy_and_keras():
    steps = adam_steps()
    schedule = training.TransformerSchedule(8, warmup_steps=3)
    arguments = {"learning_rate": schedule, "beta_2": 0.98, "epsilon": 1e-9}
    fused, step = run_adam(training.Adam(**arguments), steps)
    keras_history, _ = run_adam(keras.optimizers.Adam(**arguments), steps)
    expected = numpy_adam(ADAM_INITIAL, steps, paper_lr(np.arange(4), 8, 3))
    for t in range(len(steps)):
        for name in ADAM_INITIAL:
            change = fused[t][name] - ADAM_INITIAL[name]
            np.testing.assert_allclose(
                change, expected[t][name] - ADAM_INITIAL[name], rtol=1e-5, atol=1e-7
            )
        # Not the embedding: with a row twice in a step, Keras' update
        # squares the two gradients of the row one by one (`ops.square` of
        # IndexedSlices) and adds the squares, instead of squaring their sum.
        for name in ("kernel", "bias"):
            np.testing.assert_allclose(
                fused[t][name], keras_history[t][name], rtol=1e-6, atol=1e-6
            )
    # Embedding rows no gradient ever reached stay where they were.
    untouched = sorted(set(range(7)) - {r for g in steps for r in g["rows"]})
    assert untouched
    np.testing.assert_array_equal(
        fused[-1]["embedding"][untouched], ADAM_INITIAL["embedding"][untouched]
    )
    # The update is TensorFlow's kernel, one per variable, not Keras' ops.
    types = graph_op_types(step, steps[0])
    assert types.count("ResourceApplyAdam") == 3
    assert "Sqrt" not in types


def test_adam_keeps_keras_behaviour_elsewhere():
    """amsgrad (Keras' own update), clipping and gradient accumulation give
    Keras' results; the optimizer round-trips through its config."""
    steps = adam_steps(repeated_rows=False)
    for arguments in (
        {"amsgrad": True},
        {"clipnorm": 0.5},
        {"gradient_accumulation_steps": 2},
    ):
        arguments = {"learning_rate": 0.01, **arguments}
        fused, _ = run_adam(training.Adam(**arguments), steps)
        reference, _ = run_adam(keras.optimizers.Adam(**arguments), steps)
        for name in ADAM_INITIAL:
            # Keras computes 1 - beta_2 in float64, TensorFlow's kernel in
            # float32 from the rounded beta_2 (0.999 -> a 1e-5 relative
            # difference in v, half that in the step).
            np.testing.assert_allclose(
                fused[-1][name], reference[-1][name], rtol=2e-5, atol=1e-6,
                err_msg=f"{arguments} {name}",
            )  # fmt: skip
        assert not np.array_equal(fused[-1]["kernel"], ADAM_INITIAL["kernel"])
    optimizer = training.make_optimizer(64, warmup_steps=100, scale=0.5, clipnorm=1.0)
    rebuilt = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(optimizer)))
    )
    assert type(rebuilt) is training.Adam
    assert rebuilt.get_config() == optimizer.get_config()


def test_make_strategy_on_cpu():
    assert training.make_strategy("auto").num_replicas_in_sync >= 1
    strategy = training.make_strategy("one_device")
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        training.make_strategy("nope")


def test_keras_tfm_train_without_config_loads_the_packaged_numbers_toml(
    tmp_path, capsys, monkeypatch
):
    """The built-in default, package data and the only numbers.toml, is
    what `keras-tfm train` runs without --config: `--print-config` shows
    every value the file sets, and the sections' defaults for the rest."""
    from keras_tfm.cli import main

    packaged = resources.files("keras_tfm").joinpath("configs", "numbers.toml")
    written = tomllib.loads(packaged.read_text(encoding="utf-8"))
    assert not (ROOT / "training" / "configs" / "numbers.toml").exists()
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--print-config"]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    assert printed["name"] == written["name"] == "numbers"
    for section, values in written.items():
        if isinstance(values, dict):
            for key, value in values.items():
                assert printed[section][key] == value, (section, key)
    assert printed["data"]["task"] == "numbers" and printed["model"]["d_model"] == 128
    # Keys the file leaves out.
    assert printed["data"]["shuffle_buffer"] == 100_000
    assert printed["tokenizer"]["sampling_alpha"] == 0.0
    assert printed["training"]["accumulate_steps"] == 1
    loaded = load_run_config(None)
    assert loaded.source == "<built-in numbers.toml>"
    assert RunConfig.from_dict(printed) == loaded
    assert list(tmp_path.iterdir()) == []  # printed, nothing trained


def test_multi30k_config_builds_the_reported_model_under_10m_parameters():
    from keras_tfm.models.transformer import build_transformer

    config = load_run_config(
        ROOT / "training" / "configs" / "multi30k_de_en.toml",
        overrides={"data.data_dir": ("--data-dir", "multi30k")},
    )
    vocab = config.tokenizer.src_vocab_size
    assert config.tokenizer.shared and vocab == 8000
    model = build_transformer(config.model.transformer_config(vocab, vocab))
    # The figure in benchmarks/RESULTS.md; the bound is 10M.
    assert model.count_params() == 7_577_600 < 10_000_000
    # One embedding matrix serves both sides and the output projection.
    d_model = config.model.d_model
    embeddings = [w for w in model.weights if tuple(w.shape) == (vocab, d_model)]
    assert len(embeddings) == 1
    assert [o.method for o in config.evaluation.methods()] == ["beam", "greedy"]
    assert config.training.time_limit_minutes < 45


def accumulation_batch():
    """8 rows: the first four 9 tokens long, the last four one token, so
    that micro-batches hold very different token counts."""
    rng = np.random.default_rng(4)
    source = rng.integers(3, 20, (8, 9)).astype("int32")
    labels = rng.integers(3, 20, (8, 9)).astype("int32")
    labels[4:, 1:] = 0
    source[4:, 2:] = 0
    target = np.concatenate([np.full((8, 1), 1, "int32"), labels[:, :-1]], axis=1)
    target[labels == 0] = 0
    return {"source": source, "target": target}, labels


def one_sgd_step(batch, accumulate_steps=1, policy="float32"):
    """Initial and updated weights after one SGD step on `batch`."""
    from keras_tfm import TransformerConfig, build_transformer

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(11)
        config = TransformerConfig.preset(
            "tiny", src_vocab_size=20, tgt_vocab_size=20, dropout=0.0, max_length=16
        )
        model = build_transformer(config)
        training.compile_model(model, keras.optimizers.SGD(learning_rate=1.0), 0.1)
        strategy = tf.distribute.get_strategy()
        training.prepare_for_fit(model, strategy, batch, accumulate_steps)
        before = [np.array(w) for w in model.get_weights()]
        history = model.fit(
            tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0
        ).history
        after = [np.array(w) for w in model.get_weights()]
        assert int(model.optimizer.iterations) == 1
    finally:
        keras.config.set_dtype_policy(previous)
    update = np.concatenate([(a - b).ravel() for a, b in zip(after, before)])
    return update, history["loss"][0]


def rows(batch, part):
    x, y = batch
    return {k: v[part] for k, v in x.items()}, y[part]


def test_accumulated_step_is_the_step_of_the_whole_batch():
    """N micro-batches make one SGD step equal to the whole batch's (token
    weighted), also for an uneven split (8 rows in 3), and not the mean of
    the micro-batches' own steps."""
    batch = accumulation_batch()
    whole, loss = one_sgd_step(batch)
    for n in (2, 3):
        accumulated, accumulated_loss = one_sgd_step(batch, n)
        np.testing.assert_allclose(accumulated, whole, atol=2e-6, err_msg=str(n))
        np.testing.assert_allclose(accumulated_loss, loss, rtol=1e-6)
    # Independent check: the two halves' steps, weighted by their tokens.
    halves = [rows(batch, slice(0, 4)), rows(batch, slice(4, 8))]
    tokens = np.array([(half[1] != 0).sum() for half in halves], np.float64)
    assert tokens[0] > 5 * tokens[1]
    steps = [one_sgd_step(half)[0] for half in halves]
    weighted = (tokens[0] * steps[0] + tokens[1] * steps[1]) / tokens.sum()
    np.testing.assert_allclose(whole, weighted, atol=2e-6)
    mean_of_means = (steps[0] + steps[1]) / 2
    assert np.abs(mean_of_means - whole).max() > 100 * 2e-6


def test_accumulation_under_mixed_bfloat16():
    batch = accumulation_batch()
    whole, _ = one_sgd_step(batch, policy="mixed_bfloat16")
    accumulated, _ = one_sgd_step(batch, 2, policy="mixed_bfloat16")
    halves = [rows(batch, slice(0, 4)), rows(batch, slice(4, 8))]
    steps = [one_sgd_step(half, policy="mixed_bfloat16")[0] for half in halves]
    error = np.abs(accumulated - whole).max()
    assert error < 0.02 * np.abs(whole).max()
    assert np.abs((steps[0] + steps[1]) / 2 - whole).max() > 10 * error


def test_accumulate_steps_must_be_a_positive_int():
    model = small_model()
    compiled(model)
    with pytest.raises(ValueError, match="accumulate_steps must be an int >= 1"):
        training.token_mean_steps(model, accumulate_steps=0)


def test_step_scalars_match_an_independent_computation(tmp_path):
    """Every 4 optimizer steps over 2 epochs of 6 batches: the token-mean
    loss of the window (spanning the epoch boundary at step 8), the
    schedule's learning rate and the step's gradient norm, recomputed with
    a GradientTape on the (all but frozen) weights."""
    x, y = copy_task(rows=48)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    model = small_model()
    # A learning rate of ~1e-12: the weights, so the losses, stay put.
    schedule = training.TransformerSchedule(16, warmup_steps=5, scale=1e-10)
    training.compile_model(model, keras.optimizers.SGD(schedule), 0.1)
    training.prepare_for_fit(model, tf.distribute.get_strategy(), next(iter(dataset)))
    steps = callbacks.StepScalars(tmp_path / "steps", 4)
    model.fit(dataset, epochs=2, verbose=0, callbacks=[steps])
    loss = model.loss
    sums, counts, norms = [], [], []
    for batch_x, batch_y in dataset:
        with tf.GradientTape() as tape:
            token_losses = loss.token_losses(batch_y, model(batch_x))
            total = float(tf.reduce_sum(token_losses))
            count = float(np.sum(batch_y.numpy() != 0))
            mean = tf.reduce_sum(token_losses) / count
        gradients = tape.gradient(mean, model.trainable_variables)
        sums.append(total)
        counts.append(count)
        norms.append(float(tf.linalg.global_norm(gradients)))
    events = all_scalar_events(tmp_path / "steps")
    assert sorted(events) == [
        "gradient_norm", "learning_rate", "loss", "tokens_per_second"
    ]  # fmt: skip
    assert sorted(events["loss"]) == [4, 8, 12]
    for step in (4, 8, 12):
        batches = [(s - 1) % 6 for s in range(step - 3, step + 1)]
        expected = sum(sums[b] for b in batches) / sum(counts[b] for b in batches)
        np.testing.assert_allclose(events["loss"][step], expected, rtol=1e-5)
        np.testing.assert_allclose(
            events["gradient_norm"][step], norms[(step - 1) % 6], rtol=1e-4
        )
        np.testing.assert_allclose(
            events["learning_rate"][step],
            paper_lr(step, 16, 5, 1e-10),
            rtol=1e-5,
        )
        assert events["tokens_per_second"][step] > 0


@pytest.mark.parametrize("accumulate_steps", [1, 2])
def test_the_step_counter_counts_only_the_batches_trained(accumulate_steps):
    """An epoch of a dataset of unknown length ends with a call that finds
    the data exhausted. That call must not move the optimizer's step
    counter, which the learning-rate schedule (and its cooldown) reads."""
    x, y = copy_task(rows=44)
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .batch(8)
        .filter(lambda *_: True)  # unknown length, as keras-tfm's pipelines
    )
    batches = -(-44 // 8)
    model = compiled(small_model(), d_model=16, warmup=5)
    training.prepare_for_fit(
        model, tf.distribute.get_strategy(), next(iter(dataset)), accumulate_steps
    )
    counts = []
    model.fit(
        dataset,
        epochs=3,
        verbose=0,
        callbacks=[
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: counts.append(
                    training.optimizer_steps(model)
                )
            )
        ],
    )
    assert counts == [batches, 2 * batches, 3 * batches]
    np.testing.assert_allclose(
        float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
        paper_lr(3 * batches, 16, 5),
        rtol=2e-6,
    )
