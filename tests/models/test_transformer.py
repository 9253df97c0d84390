import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from support.models import small_config
from support.numerics import dtype_name, to_numpy
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
