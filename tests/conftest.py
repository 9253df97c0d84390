import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402
from support.numbers import NUMBERS_MAX_LENGTH, NUMBERS_TRAIN  # noqa: E402
from support.paths import TESTS  # noqa: E402

# The files whose tests start training and serving processes take minutes
# each (paths relative to tests/). Collected first, in this order, they
# start first under `pytest -n 2 --dist loadfile` (CI), so no worker is left
# running one of them alone at the end.
LONGEST_FILES = (
    "training/test_distributed.py",
    "export/test_saved_model.py",
    "job/test_trained_run.py",
    "decoding/test_generation.py",
    "job/test_train_command.py",
    "training/test_train_step.py",
    "job/test_short_run.py",
    "job/test_resume.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        try:
            path = item.path.relative_to(TESTS).as_posix()
        except ValueError:  # a test file outside tests/
            return len(LONGEST_FILES)
        if path in LONGEST_FILES:
            return LONGEST_FILES.index(path)
        return len(LONGEST_FILES)

    items.sort(key=rank)


@pytest.fixture(autouse=True)
def _seed_and_policy():
    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


# One tiny numbers model trained for a few seconds, shared by the export
# tests (SavedModel and CTranslate2): its translations are not degenerate.
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


@pytest.fixture(scope="session")
def task(tmp_path_factory):
    """`(data_dir, sources, targets, src_tok, tgt_tok)`: the numbers task up
    to 599 on disk (500 training pairs) and BPE tokenizers of 128 pieces
    trained on its training split; for the data pipeline and tokenizer
    tests, which only read it."""
    from keras_tfm.data.numbers_task import write_numbers_task
    from keras_tfm.data.text_files import read_parallel
    from keras_tfm.text.tokenizer import Tokenizer, train_sentencepiece

    data_dir = write_numbers_task(
        tmp_path_factory.mktemp("numbers"), max_number=599, valid_size=50, test_size=50
    )
    sources, targets = read_parallel(data_dir, "train", "de", "en")
    src_tok = Tokenizer(train_sentencepiece(sources, 128, "bpe"))
    tgt_tok = Tokenizer(train_sentencepiece(targets, 128, "bpe"))
    return data_dir, sources, targets, src_tok, tgt_tok
