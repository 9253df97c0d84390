import unicodedata

import numpy as np
import pytest
import sentencepiece as spm
import tensorflow as tf
from support.paths import MULTI30K

from keras_tfm.text.tokenizer import Tokenizer, train_sentencepiece

GERMAN = [
    "Zwei junge Männer spielen Fußball auf einer grünen Wiese.",
    "Ein kleines Mädchen klettert in ein Spielhaus aus Holz.",
    "Eine Frau mit blauem Hut läuft über die Straße.",
    "Der Hund springt über den Zaun, um den Ball zu fangen!",
    "Drei Kinder sitzen am Tisch und essen Äpfel.",
    "Ist das Wasser im See heute nicht zu kalt?",
    "Ein Mann in Schwarz fährt mit dem Fahrrad durch die Stadt.",
    "Öffentliche Verkehrsmittel sind am Wochenende überfüllt.",
    "Die Großmutter liest ihren Enkeln eine Geschichte vor.",
    "Zwei Hunde laufen im Schnee hinter einem Schlitten her.",
]
ENGLISH = [
    "Two young men are playing football on a green meadow.",
    "A little girl climbs into a wooden playhouse.",
    "A woman in a blue hat walks across the street.",
    "The dog jumps over the fence to catch the ball!",
    "Three children sit at the table and eat apples.",
    "Isn't the water in the lake too cold today?",
    "A man in black rides his bicycle through the city.",
    "Public transport is crowded at the weekend.",
    "The grandmother reads a story to her grandchildren.",
    "Two dogs run behind a sled in the snow.",
]
# Unseen sentences made of characters the corpus contains.
UNSEEN = [
    "Ein Mann spielt mit dem Hund im Garten.",
    "Große Kinder essen Äpfel über der Straße.",
    "A girl rides a green bicycle in the snow.",
    "Isn't the dog too young to play football?",
]


@pytest.fixture(scope="module")
def proto():
    return train_sentencepiece(GERMAN + ENGLISH, vocab_size=200, model_type="unigram")


@pytest.fixture(scope="module")
def tokenizer(proto):
    return Tokenizer(proto)


@pytest.fixture(scope="module")
def reference(proto):
    return spm.SentencePieceProcessor(model_proto=proto)


def decode(strings):
    return [s.decode("utf-8") for s in strings.numpy().tolist()]


def test_special_ids(tokenizer, reference):
    assert (tokenizer.pad_id, tokenizer.unk_id) == (0, 1)
    assert (tokenizer.start_id, tokenizer.end_id) == (2, 3)
    assert reference.id_to_piece([0, 1, 2, 3]) == ["<pad>", "<unk>", "<s>", "</s>"]
    assert tokenizer.vocab_size == reference.get_piece_size()
    assert 10 < tokenizer.vocab_size <= 200


def test_tokenize_matches_sentencepiece(tokenizer, reference):
    sentences = GERMAN + ENGLISH + UNSEEN
    ids = tokenizer.tokenize(sentences)
    assert isinstance(ids, tf.RaggedTensor)
    assert ids.dtype == tf.int32
    assert ids.to_list() == reference.encode(sentences)
    # No start or end id is added.
    assert not np.isin(ids.flat_values.numpy(), [0, 2, 3]).any()


def test_tokenize_source_appends_the_end_id_to_nonempty_sentences(tokenizer, reference):
    sentences = ["the quick brown fox", "", "  \t ", "a"]
    ids = tokenizer.tokenize_source(sentences, max_length=4).to_list()
    expected = [reference.encode(s) for s in sentences]
    assert expected[1] == expected[2] == []
    assert ids == [([*pieces[:3], 3] if pieces else []) for pieces in expected]
    assert len(expected[0]) > 3  # the first one was cut
    with pytest.raises(ValueError, match="max_length"):
        tokenizer.tokenize_source(sentences, max_length=0)


def test_tokenize_scalar_and_tensor(tokenizer, reference):
    sentence = GERMAN[0]
    scalar = tokenizer.tokenize(sentence)
    assert isinstance(scalar, tf.RaggedTensor)
    assert scalar.to_list() == [reference.encode(sentence)]
    tensor = tokenizer.tokenize(tf.constant(ENGLISH[:3]))
    assert tensor.to_list() == reference.encode(ENGLISH[:3])


@pytest.mark.parametrize("sentences", [GERMAN, ENGLISH, UNSEEN])
def test_round_trip(tokenizer, sentences):
    assert decode(tokenizer.detokenize(tokenizer.tokenize(sentences))) == sentences


def pad_rows(rows, extra=0):
    width = max(len(row) for row in rows) + extra
    return [row + [0] * (width - len(row)) for row in rows]


def test_detokenize_dense_drops_special_ids(tokenizer, reference):
    a, b = reference.encode(UNSEEN[:2])
    rows = pad_rows(
        [
            [2] + a + [3],
            # Everything after the first end id is ignored.
            b + [3] + a + [3],
        ],
        extra=3,
    )
    text = tokenizer.detokenize(tf.constant(rows, dtype=tf.int32))
    assert text.dtype == tf.string
    assert decode(text) == UNSEEN[:2]
    text64 = tokenizer.detokenize(tf.constant(rows, dtype=tf.int64))
    assert decode(text64) == UNSEEN[:2]


def test_detokenize_ragged_and_single(tokenizer, reference):
    a, b = reference.encode(UNSEEN[2:])
    ragged = tf.ragged.constant([[2] + a + [3], b], dtype=tf.int32)
    assert decode(tokenizer.detokenize(ragged)) == UNSEEN[2:]
    single = tokenizer.detokenize(tf.constant([2] + a + [3, 0, 0]))
    assert single.shape == ()
    assert single.numpy().decode("utf-8") == UNSEEN[2]
    empty = tokenizer.detokenize(tf.constant(pad_rows([[3] + a, [0, 0, 0]])))
    assert decode(empty) == ["", ""]


def test_survives_random_seed_reset(proto):
    # tf.random.set_seed clears TensorFlow's eager kernel cache.
    tokenizer = Tokenizer(proto)
    expected = tokenizer.tokenize(GERMAN).to_list()
    tf.random.set_seed(7)
    assert tokenizer.tokenize(GERMAN).to_list() == expected
    tf.random.set_seed(8)
    assert decode(tokenizer.detokenize(tokenizer.tokenize(GERMAN))) == GERMAN


def test_inside_tf_function(tokenizer):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def encode(strings):
        ids = tokenizer.tokenize(strings)
        ids = tf.concat(
            [tf.fill([ids.nrows(), 1], tokenizer.start_id), ids.to_tensor()], axis=1
        )
        # Decoder-style output: start id, text, end id, then padding.
        return tf.pad(ids, [[0, 0], [0, 2]], constant_values=tokenizer.end_id)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
    def decode_fn(ids):
        return tokenizer.detokenize(ids)

    ids = encode(tf.constant(UNSEEN))
    assert ids.dtype == tf.int32
    text = decode(decode_fn(ids))
    assert text == UNSEEN
    for line in text:
        for marker in ("<pad>", "<s>", "</s>", "<unk>", "\u2047"):
            assert marker not in line


def test_saved_model_round_trip(tokenizer, tmp_path):
    module = tf.Module()
    module.tokenizer = tokenizer

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def translate(strings):
        return tokenizer.detokenize(tokenizer.tokenize(strings).to_tensor())

    module.translate = translate
    tf.saved_model.save(module, str(tmp_path / "saved"))
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    assert decode(loaded.translate(tf.constant(GERMAN[:3]))) == GERMAN[:3]


def test_save_load(tokenizer, proto, tmp_path):
    path = tmp_path / "sub" / "de.model"
    assert tokenizer.save(path) == path
    assert path.read_bytes() == proto
    path.write_bytes(b"stale")
    tokenizer.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["de.model"]
    loaded = Tokenizer.load(path)
    assert loaded.model_proto == proto
    assert loaded.vocab_size == tokenizer.vocab_size
    assert loaded.tokenize(UNSEEN).to_list() == tokenizer.tokenize(UNSEEN).to_list()


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_training_is_deterministic(model_type):
    first = train_sentencepiece(GERMAN, 120, model_type)
    second = train_sentencepiece(iter(GERMAN), 120, model_type)
    assert first == second
    sp = spm.SentencePieceProcessor(model_proto=first)
    assert sp.id_to_piece([0, 1, 2, 3]) == ["<pad>", "<unk>", "<s>", "</s>"]


def test_tiny_corpus_gets_smaller_vocabulary():
    tokenizer = Tokenizer(train_sentencepiece(["hallo welt", "", "ein test"], 500))
    assert 4 < tokenizer.vocab_size < 500
    assert decode(tokenizer.detokenize(tokenizer.tokenize(["hallo test"]))) == [
        "hallo test"
    ]


def test_bad_arguments():
    with pytest.raises(ValueError, match="model_type"):
        train_sentencepiece(GERMAN, 100, model_type="word")
    with pytest.raises(ValueError, match="blank"):
        train_sentencepiece(["", "  "], 100)
    with pytest.raises(ValueError, match="SentencePiece"):
        Tokenizer(b"not a model")


@pytest.mark.skipif(not MULTI30K.is_dir(), reason="Multi30k data not available")
@pytest.mark.parametrize("lang", ["de", "en"])
def test_multi30k_round_trip(lang):
    with open(MULTI30K / f"train.{lang}", encoding="utf-8") as file:
        lines = [next(file).rstrip("\n") for _ in range(2000)]
    tokenizer = Tokenizer(train_sentencepiece(lines[:1500], 1000, "bpe"))
    held_out = lines[1500:]
    ids = tokenizer.tokenize(held_out)
    text = decode(tokenizer.detokenize(ids))
    checked = 0
    for line, row, out in zip(held_out, ids.to_list(), text):
        if tokenizer.unk_id in row:
            continue
        # nmt_nfkc normalization: NFKC and collapsed whitespace.
        assert out == " ".join(unicodedata.normalize("NFKC", line).split())
        checked += 1
    assert checked > 400


@pytest.fixture(scope="module")
def bpe_proto():
    return train_sentencepiece(GERMAN + ENGLISH, vocab_size=200, model_type="bpe")


@pytest.mark.parametrize(
    "model_type,alpha,nbest_size",
    [("bpe", 0.1, -1), ("unigram", 0.5, -1), ("unigram", 0.1, 64)],
)
def test_sampler_draws_valid_segmentations_like_sentencepiece(
    model_type, alpha, nbest_size, proto, bpe_proto
):
    model = bpe_proto if model_type == "bpe" else proto
    tokenizer = Tokenizer(model)
    reference = spm.SentencePieceProcessor(model_proto=model)
    sample = tokenizer.sampler(alpha, nbest_size)
    best = [reference.encode(s) for s in GERMAN]
    draws = 50
    ours, theirs = [], []
    for _ in range(draws):
        rows = sample(GERMAN).to_list()
        for row, sentence in zip(rows, GERMAN):
            # Every draw is a segmentation of the same text into known pieces.
            assert reference.decode(row) == sentence
            assert all(4 <= i < tokenizer.vocab_size for i in row)
        ours.append([len(r) for r in rows])
        theirs.append(
            [
                len(
                    reference.encode(
                        s, enable_sampling=True, alpha=alpha, nbest_size=nbest_size
                    )
                )
                for s in GERMAN
            ]
        )
    ours, theirs = np.array(ours), np.array(theirs)
    # Draws differ from the best segmentation, and their lengths follow
    # SentencePiece's own sampler (mean pieces per sentence within 5%).
    assert (ours != np.array([len(b) for b in best])).any()
    np.testing.assert_allclose(ours.mean(), theirs.mean(), rtol=0.05)
    # The deterministic path is untouched by the sampler sharing its model.
    assert tokenizer.tokenize(GERMAN).to_list() == best


def test_sampler_bad_arguments(tokenizer):
    with pytest.raises(ValueError, match="alpha must be in"):
        tokenizer.sampler(0.0)
    for nbest_size in (0, 1, -2, 513):
        with pytest.raises(ValueError, match="nbest_size must be"):
            tokenizer.sampler(0.1, nbest_size=nbest_size)
    # The sampler adds nothing to what the tokenizer module tracks (and so
    # to what a SavedModel holding it exports).
    before = [type(t).__name__ for t in tokenizer._flatten()]
    tokenizer.sampler(0.1, nbest_size=512)(["Ein Haus."])
    assert [type(t).__name__ for t in tokenizer._flatten()] == before


def test_tokenizer_trains_on_a_seeded_sample(task):
    """`input_sentence_size` bounds what SentencePiece keeps; the sample, and
    so the model, is the same for the same seed."""
    _, sources, *_ = task
    lines = (line for line in sources)
    first = train_sentencepiece(lines, 64, "bpe", input_sentence_size=200, seed=3)
    again = train_sentencepiece(
        iter(sources), 64, "bpe", input_sentence_size=200, seed=3
    )
    whole = train_sentencepiece(sources, 64, "bpe")
    assert first == again
    assert first != whole
