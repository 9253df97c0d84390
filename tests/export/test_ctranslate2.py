"""The CTranslate2 export: the same weights score every token as keras_tfm
does, and greedy search picks the same tokens."""

import subprocess
import sys

import keras
import numpy as np
import pytest
from support.numbers import NUMBERS_MAX_LENGTH, NUMBERS_TRAIN
from support.numerics import to_numpy
from support.processes import child_env

from keras_tfm import TransformerConfig, build_transformer, generate
from keras_tfm.data.numbers_task import number_pairs
from keras_tfm.text.tokenizer import Tokenizer, train_sentencepiece

ctranslate2 = pytest.importorskip("ctranslate2")
pytestmark = pytest.mark.skipif(
    keras.config.backend() != "tensorflow", reason="the tokenizers need TensorFlow"
)

from keras_tfm.export.ctranslate2 import (  # noqa: E402
    decoding_options,
    export_ctranslate2,
)

VARIANTS = {
    "post-norm": {},
    "pre-norm": dict(pre_norm=True),
    "shared-tied": dict(share_embeddings=True, tie_output=True),
    "gelu-epsilon": dict(activation="gelu", layer_norm_epsilon=1e-3),
}


def pieces(tokenizer, rows):
    """Token ids -> SentencePiece pieces, as CTranslate2 takes them."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor()
    processor.LoadFromSerializedProto(tokenizer.model_proto)
    return [[processor.id_to_piece(int(i)) for i in row] for row in rows]


@pytest.fixture(scope="module")
def tokenizer():
    pairs = number_pairs(range(400))
    text = [p[0] for p in pairs] + [p[1] for p in pairs]
    return Tokenizer(train_sentencepiece(text, 80, "bpe"))


def random_model(tokenizer, seed, **overrides):
    keras.utils.set_random_seed(seed)
    config = TransformerConfig(
        src_vocab_size=tokenizer.vocab_size,
        tgt_vocab_size=tokenizer.vocab_size,
        d_model=32,
        num_heads=4,
        d_ff=64,
        num_encoder_layers=2,
        num_decoder_layers=2,
        dropout=0.0,
        max_length=16,
        **overrides,
    )
    return build_transformer(config)


def log_softmax_without_padding(logits):
    logits = logits.astype(np.float64)
    logits[..., 0] = -np.inf  # the export never generates padding
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


@pytest.mark.parametrize("variant", VARIANTS)
def test_converted_model_scores_every_token_like_keras(variant, tokenizer, tmp_path):
    model = random_model(tokenizer, 5, **VARIANTS[variant])
    export_ctranslate2(model, tokenizer, tokenizer, tmp_path / "ct2")
    translator = ctranslate2.Translator(str(tmp_path / "ct2"), device="cpu")
    rng = np.random.default_rng(6)
    vocab, end, start = tokenizer.vocab_size, tokenizer.end_id, tokenizer.start_id
    sources = [rng.integers(4, vocab, n) for n in (5, 9, 3, 12)]
    targets = [rng.integers(4, vocab, n) for n in (7, 2, 10, 4)]
    # CTranslate2 appends the end token to both sides (the export asks it to).
    scored = translator.score_batch(
        pieces(tokenizer, sources), pieces(tokenizer, targets)
    )
    for source, target, result in zip(sources, targets, scored):
        labels = np.append(target, end)
        inputs = {
            "source": np.append(source, end)[None].astype("int32"),
            "target": np.append(start, target)[None].astype("int32"),
        }
        logits = to_numpy(model(inputs))[0]
        expected = log_softmax_without_padding(logits)[np.arange(len(labels)), labels]
        assert result.tokens == pieces(tokenizer, [labels])[0]
        np.testing.assert_allclose(result.log_probs, expected, atol=2e-4, rtol=1e-4)
    # Greedy search: the same tokens, up to the same length limit.
    batch = np.zeros((len(sources), 13), "int32")
    for row, source in enumerate(sources):
        batch[row, : len(source) + 1] = np.append(source, end)
    tokens, _ = generate(
        model, batch, start_id=start, end_id=end, method="greedy", max_length=16
    )
    ours = [[t for t in row if t not in (0, end)] for row in to_numpy(tokens)]
    theirs = translator.translate_batch(
        pieces(tokenizer, sources), beam_size=1, **decoding_options(16)
    )
    assert [h.hypotheses[0] for h in theirs] == pieces(tokenizer, ours)


def test_existing_output_is_left_untouched(tokenizer, tmp_path):
    (tmp_path / "ct2").mkdir()
    (tmp_path / "ct2" / "keep").write_text("mine")
    with pytest.raises(FileExistsError, match="left untouched"):
        export_ctranslate2(
            random_model(tokenizer, 1), tokenizer, tokenizer, tmp_path / "ct2"
        )
    assert (tmp_path / "ct2" / "keep").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct2"]


def test_cli_export_of_a_trained_run_translates_like_generate(
    trained_numbers, tmp_path
):
    output = tmp_path / "numbers-ct2"
    env = child_env()
    result = subprocess.run(
        [sys.executable, "-m", "keras_tfm.cli", "export", str(trained_numbers.run_dir),
         "--format", "ctranslate2", "--output", str(output)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(output)
    assert {"model.bin", "config.json"} <= {p.name for p in output.iterdir()}

    src, tgt, model = trained_numbers.src, trained_numbers.tgt, trained_numbers.model
    # Numbers it was trained on (translated well) and some it was not.
    numbers = NUMBERS_TRAIN[::20][:48] + [3, 13, 203, 473, 993, 1000, 1234, 2024]
    sentences = [german for german, _ in number_pairs(numbers)]
    ids = [list(row) for row in src.tokenize(sentences).numpy()]
    batch = np.zeros((len(ids), max(map(len, ids)) + 1), "int32")
    for row, source in enumerate(ids):
        batch[row, : len(source) + 1] = source + [src.end_id]
    tokens, _ = generate(
        model, batch, start_id=tgt.start_id, end_id=tgt.end_id, method="greedy",
        max_length=NUMBERS_MAX_LENGTH,
    )  # fmt: skip
    ours = [[t for t in row if t not in (0, tgt.end_id)] for row in to_numpy(tokens)]
    translator = ctranslate2.Translator(str(output), device="cpu")
    theirs = translator.translate_batch(
        pieces(src, ids), beam_size=1, **decoding_options(NUMBERS_MAX_LENGTH)
    )
    assert [h.hypotheses[0] for h in theirs] == pieces(tgt, ours)
    # The translations are real ones, not a degenerate agreement.
    english = [e for _, e in number_pairs(numbers)]
    text = [t.decode() for t in tgt.detokenize(tokens).numpy()]
    assert np.mean([a == b for a, b in zip(text[:48], english[:48])]) > 0.8

    # int8 weights convert too; the CLI refuses to overwrite.
    quantized = tmp_path / "numbers-int8"
    result = subprocess.run(
        [sys.executable, "-m", "keras_tfm.cli", "export", str(trained_numbers.run_dir),
         "--format", "ctranslate2", "--output", str(quantized), "--quantization",
         "int8"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    again = subprocess.run(
        [sys.executable, "-m", "keras_tfm.cli", "export", str(trained_numbers.run_dir),
         "--format", "ctranslate2", "--output", str(quantized)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert again.returncode == 2
    assert f"keras-tfm: error: {quantized} already exists" in again.stderr
