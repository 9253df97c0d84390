import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# The files whose tests start training and serving processes take minutes
# each. Collected first, they start first under `pytest -n 2 --dist loadfile`
# (CI), so no worker is left running one of them alone at the end.
LONGEST_FILES = ("test_distributed.py", "test_cli_train.py", "test_export.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name not in LONGEST_FILES)


@pytest.fixture(autouse=True)
def _seed_and_policy():
    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def assert_config_round_trip(layer, *call_args, **call_kwargs):
    """Rebuilds a layer from get_config, copies weights, checks equal outputs."""
    expected = to_numpy(layer(*call_args, **call_kwargs))
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    clone(*call_args, **call_kwargs)
    clone.set_weights(layer.get_weights())
    assert clone.get_config() == config
    np.testing.assert_allclose(
        to_numpy(clone(*call_args, **call_kwargs)), expected, rtol=1e-6, atol=1e-6
    )
    # The serialized form must also be resolvable through the registry.
    rebuilt = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(rebuilt) is type(layer)


def dtype_name(x):
    return keras.backend.standardize_dtype(x.dtype)


# One tiny numbers model trained for a few seconds, shared by the export
# tests (SavedModel and CTranslate2): its translations are not degenerate.
NUMBERS_MAX_LENGTH = 24
NUMBERS_TRAIN = [n for n in range(1000) if n % 10 != 3]


@pytest.fixture(scope="session")
def trained_numbers(tmp_path_factory):
    """`(model, src, tgt, run_dir)`: a run directory like `keras-tfm train`'s."""
    import json
    from types import SimpleNamespace

    from keras_tfm import TransformerConfig, build_transformer
    from keras_tfm.data.batching import make_dataset
    from keras_tfm.data.numbers_task import number_pairs
    from keras_tfm.data.options import BatchingOptions
    from keras_tfm.job.run_config import RunConfig
    from keras_tfm.text.tokenizer import Tokenizer, train_sentencepiece
    from keras_tfm.training import compile_model

    keras.utils.set_random_seed(3)
    pairs = number_pairs(NUMBERS_TRAIN)
    german = [p[0] for p in pairs]
    english = [p[1] for p in pairs]
    src = Tokenizer(train_sentencepiece(german, 96, "bpe"))
    tgt = Tokenizer(train_sentencepiece(english, 96, "bpe"))
    config = TransformerConfig.preset(
        "tiny",
        src_vocab_size=src.vocab_size,
        tgt_vocab_size=tgt.vocab_size,
        d_model=64,
        num_heads=4,
        d_ff=128,
        num_encoder_layers=1,
        num_decoder_layers=1,
        dropout=0.0,
        max_length=NUMBERS_MAX_LENGTH,
    )
    model = build_transformer(config)
    dataset = make_dataset(
        german,
        english,
        src,
        tgt,
        BatchingOptions(
            batch_size=32, max_length=NUMBERS_MAX_LENGTH, shuffle=True, seed=3
        ),
    )
    compile_model(model, keras.optimizers.Adam(3e-3), label_smoothing=0.0)
    model.fit(dataset, epochs=6, verbose=0)

    run_dir = tmp_path_factory.mktemp("run")
    model.save(run_dir / "model.keras")
    src.save(run_dir / "tokenizers" / "src.model")
    tgt.save(run_dir / "tokenizers" / "tgt.model")
    (run_dir / "transformer_config.json").write_text(json.dumps(config.to_dict()))
    # The resolved run config `keras-tfm train` writes; export reads [export].
    model_section = {
        k: v for k, v in config.to_dict().items() if not k.endswith("vocab_size")
    }
    run_config = RunConfig.from_dict({"name": "numbers", "model": model_section})
    (run_dir / "config.json").write_text(json.dumps(run_config.to_dict()))
    return SimpleNamespace(model=model, src=src, tgt=tgt, run_dir=run_dir)
