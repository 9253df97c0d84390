import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from support.models import small_config
from support.numerics import dtype_name, to_numpy
from support.paths import FIXTURES
from support.processes import child_env

from keras_tfm import TransformerConfig, build_transformer

VARIANTS = [
    {},
    {"share_embeddings": True, "tie_output": True},
    {"pre_norm": True, "tie_output": True},
]


def logits(model, source, target):
    return to_numpy(model({"source": source, "target": target}, training=False))


@pytest.mark.parametrize("overrides", VARIANTS)
def test_causality(overrides):
    model = build_transformer(small_config(**overrides))
    rng = np.random.default_rng(0)
    source = rng.integers(1, 40, (2, 7)).astype("int32")
    target = rng.integers(1, 40, (2, 9)).astype("int32")
    base = logits(model, source, target)
    for t in range(8):
        changed = target.copy()
        changed[:, t + 1 :] = rng.integers(1, 40, changed[:, t + 1 :].shape)
        after = logits(model, source, changed)
        np.testing.assert_allclose(after[:, : t + 1], base[:, : t + 1], atol=1e-5)
        assert not np.allclose(after[:, t + 1 :], base[:, t + 1 :], atol=1e-3)


@pytest.mark.parametrize("overrides", VARIANTS)
def test_padding_invariance(overrides):
    model = build_transformer(small_config(**overrides))
    rng = np.random.default_rng(1)
    source = rng.integers(1, 40, (2, 6)).astype("int32")
    target = rng.integers(1, 40, (2, 5)).astype("int32")
    base = logits(model, source, target)
    padded_source = np.pad(source, ((0, 0), (0, 4)))
    padded_target = np.pad(target, ((0, 0), (0, 3)))
    np.testing.assert_allclose(logits(model, padded_source, target), base, atol=1e-5)
    np.testing.assert_allclose(
        logits(model, source, padded_target)[:, :5], base, atol=1e-5
    )
    # Rows of different lengths in one batch see only their own tokens.
    mixed_source = padded_source.copy()
    mixed_source[1, 3:] = 0
    alone = logits(model, source[1:, :3], target[1:])
    np.testing.assert_allclose(
        logits(model, mixed_source, target)[1], alone[0], atol=1e-5
    )


def test_structure_and_weight_sharing():
    model = build_transformer(small_config(share_embeddings=True, tie_output=True))
    names = [layer.name for layer in model.layers]
    assert "shared_embedding" in names and "output_logits" not in names
    assert [i.name for i in model.inputs] == ["source", "target"]
    assert model.source_embedding is model.target_embedding
    assert model.output_logits is None
    untied = build_transformer(small_config())
    # One embedding matrix (40 x 32) and the output projection (+bias) less.
    assert untied.count_params() - model.count_params() == 40 * 32 * 2 + 40


def expected_parameter_count(config):
    d, f, v = config.d_model, config.d_ff, config.src_vocab_size
    attention = 4 * (d * d + d)
    feed_forward = d * f + f + f * d + d
    norm = 2 * d
    encoder = config.num_encoder_layers * (attention + feed_forward + 2 * norm)
    decoder = config.num_decoder_layers * (2 * attention + feed_forward + 3 * norm)
    return v * d + encoder + decoder


def test_base_preset_parameter_count():
    config = TransformerConfig.preset(
        "base", src_vocab_size=37000, tgt_vocab_size=37000
    )
    assert (config.d_model, config.num_heads, config.d_ff) == (512, 8, 2048)
    model = build_transformer(config)
    assert model.count_params() == expected_parameter_count(config) == 63_082_496


@pytest.mark.slow
def test_mixed_bfloat16_runs_with_float32_logits():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = build_transformer(small_config(tie_output=True))
    rng = np.random.default_rng(2)
    source = rng.integers(0, 40, (3, 8)).astype("int32")
    target = rng.integers(0, 40, (3, 6)).astype("int32")
    source[:, 0] = target[:, 0] = 1
    out = model({"source": source, "target": target})
    assert dtype_name(out) == "float32"
    assert np.all(np.isfinite(to_numpy(out)))
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
    )
    history = model.fit(
        {"source": source, "target": target}, target, epochs=2, verbose=0
    )
    assert np.all(np.isfinite(history.history["loss"]))


@pytest.mark.slow
def test_save_and_load_in_fresh_process(tmp_path):
    model = build_transformer(small_config(tie_output=True, pre_norm=True))
    rng = np.random.default_rng(3)
    source = rng.integers(0, 40, (2, 7)).astype("int32")
    target = rng.integers(0, 40, (2, 5)).astype("int32")
    source[:, 0] = target[:, 0] = 1
    np.savez(tmp_path / "inputs.npz", source=source, target=target)
    model.save(tmp_path / "m.keras")
    script = textwrap.dedent(
        f"""
        import numpy as np, keras
        import keras_tfm  # registers the layer classes
        data = np.load({str(tmp_path / "inputs.npz")!r})
        model = keras.models.load_model({str(tmp_path / "m.keras")!r})
        assert type(model) is keras_tfm.Transformer, type(model)
        assert model.config.to_dict() == {model.config.to_dict()!r}
        out = model({{"source": data["source"], "target": data["target"]}})
        np.save({str(tmp_path / "out.npy")!r}, keras.ops.convert_to_numpy(out))
        """
    )
    env = child_env(backend=keras.config.backend())
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=tmp_path)
    np.testing.assert_array_equal(
        np.load(tmp_path / "out.npy"), logits(model, source, target)
    )


@pytest.mark.slow
def test_model_saved_by_release_0_1_0_loads_and_decodes_the_same(tmp_path):
    """A run's model.keras as keras_tfm 0.1.0 wrote it (a plain functional
    model with its compiled optimizer), loaded after `import keras_tfm` in a
    fresh process: its logits and greedy tokens equal those 0.1.0 computed."""
    script = textwrap.dedent(
        f"""
        import numpy as np, keras
        import keras_tfm
        from keras_tfm.models.legacy import upgrade_model
        saved = keras.models.load_model(
            {str(FIXTURES / "keras_tfm_0.1.0_model.keras")!r}
        )
        data = np.load({str(FIXTURES / "keras_tfm_0.1.0_model.npz")!r})
        model = upgrade_model(saved)
        assert type(model) is keras_tfm.Transformer
        logits = model({{"source": data["source"], "target": data["target"]}})
        tokens, scores = model.generate(
            data["source"], keras_tfm.DecodingOptions("greedy", max_length=8)
        )
        np.savez(
            {str(tmp_path / "out.npz")!r},
            iterations=int(saved.optimizer.iterations.numpy()),
            optimizer=type(saved.optimizer).__name__,
            logits=keras.ops.convert_to_numpy(logits),
            tokens=keras.ops.convert_to_numpy(tokens),
            scores=keras.ops.convert_to_numpy(scores),
        )
        """
    )
    env = child_env(backend=keras.config.backend())
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=tmp_path)
    out = np.load(tmp_path / "out.npz")
    expected = np.load(FIXTURES / "keras_tfm_0.1.0_model.npz")
    assert int(out["iterations"]) == int(expected["iterations"]) == 2
    assert str(out["optimizer"]) == "Adam"
    np.testing.assert_allclose(out["logits"], expected["logits"], atol=1e-6)
    np.testing.assert_array_equal(out["tokens"], expected["greedy_tokens"])
    np.testing.assert_allclose(out["scores"], expected["greedy_scores"], atol=1e-5)


def test_config_round_trip_rebuilds_the_same_model():
    model = build_transformer(small_config(share_embeddings=True, pre_norm=True))
    rng = np.random.default_rng(4)
    source = rng.integers(1, 40, (2, 6)).astype("int32")
    target = rng.integers(1, 40, (2, 4)).astype("int32")
    clone = type(model).from_config(model.get_config())
    assert clone.config == model.config
    assert clone.source_embedding is clone.target_embedding
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(
        logits(clone, source, target), logits(model, source, target)
    )
    # The parts it carries are the layers of its graph.
    layer_ids = {id(layer) for layer in model.layers}
    for part in (model.encoder, model.decoder, model.source_embedding):
        assert id(part) in layer_ids
    # project() is the graph's last step: decoder states -> the same logits.
    memory = model.encoder(model.source_embedding(source))
    hidden = model.decoder(model.target_embedding(target), memory)
    np.testing.assert_allclose(
        to_numpy(model.project(hidden)), logits(model, source, target), atol=1e-6
    )


def reverse_task(count, seed, vocab=12, max_len=8):
    """Sequences of ids 3..vocab-1; target = reversed source; 1 = start, 2 = end."""
    rng = np.random.default_rng(seed)
    source = np.zeros((count, max_len), "int32")
    decoder_input = np.zeros((count, max_len + 1), "int32")
    labels = np.zeros((count, max_len + 1), "int32")
    for row, length in enumerate(rng.integers(3, max_len + 1, count)):
        tokens = rng.integers(3, vocab, length)
        source[row, :length] = tokens
        decoder_input[row, 0] = 1
        decoder_input[row, 1 : length + 1] = tokens[::-1]
        labels[row, :length] = tokens[::-1]
        labels[row, length] = 2
    return {"source": source, "target": decoder_input}, labels


@pytest.mark.slow
def test_tiny_model_learns_to_reverse():
    keras.utils.set_random_seed(0)
    config = TransformerConfig.preset(
        "tiny", src_vocab_size=12, tgt_vocab_size=12, dropout=0.0, max_length=16
    )
    model = build_transformer(config)
    steps = 5 * (6000 // 64)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=2e-3, warmup_steps=steps // 10
    )
    model.compile(
        keras.optimizers.Adam(schedule, beta_2=0.98),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
    )
    inputs, labels = reverse_task(6000, seed=0)
    model.fit(inputs, labels, batch_size=64, epochs=5, verbose=0)
    held_out, expected = reverse_task(500, seed=1)
    predicted = np.argmax(to_numpy(model.predict(held_out, verbose=0)), -1)
    real = expected != 0
    accuracy = (predicted[real] == expected[real]).mean()
    assert accuracy >= 0.99, accuracy


@pytest.mark.parametrize(
    "field, value",
    [
        ("d_model", 30),
        ("num_heads", 0),
        ("src_vocab_size", 0),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("attention_dropout", 1.5),
        ("d_ff", 0),
        ("num_encoder_layers", 0),
        ("max_length", 0),
    ],
)
def test_config_validation_names_the_field(field, value):
    values = dict(src_vocab_size=10, tgt_vocab_size=10, d_model=32, num_heads=4)
    values[field] = value
    with pytest.raises(ValueError, match=field):
        TransformerConfig(**values)


def test_config_presets_and_unknown_fields():
    big = TransformerConfig.preset("big", src_vocab_size=100, tgt_vocab_size=100)
    assert (big.d_model, big.num_heads, big.d_ff, big.dropout) == (1024, 16, 4096, 0.3)
    with pytest.raises(ValueError, match="share_embeddings"):
        TransformerConfig.preset("base", src_vocab_size=10, tgt_vocab_size=12)
    with pytest.raises(ValueError, match="'huge'"):
        TransformerConfig.preset("huge", src_vocab_size=10, tgt_vocab_size=10)
    with pytest.raises(ValueError, match="widht is not a field"):
        TransformerConfig.from_dict(
            {"src_vocab_size": 5, "tgt_vocab_size": 5, "widht": 3}
        )
    config = small_config()
    assert TransformerConfig.from_dict(config.to_dict()) == config
