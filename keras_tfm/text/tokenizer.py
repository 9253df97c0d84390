"""SentencePiece subword tokenization that runs inside the TensorFlow graph.

Training uses the `sentencepiece` package; tokenizing and detokenizing use
`tensorflow_text.SentencepieceTokenizer`, an op that TF Serving links in, so
both can be traced into a `tf.function` and exported in a SavedModel.

Every model trained here reserves the same special ids: pad=0, unk=1,
start (bos)=2 and end (eos)=3.
"""

import hashlib
import io
import itertools
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow_text.python.ops import sentencepiece_tokenizer as _tf_text_sp

from keras_tfm.constants import END_ID, MAX_NBEST_SIZE, PADDING_ID, START_ID, UNK_ID
from keras_tfm.files import write_atomic

_MODEL_TYPES = ("unigram", "bpe")


def train_sentencepiece(
    lines: Iterable[str],
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    *,
    hard_vocab_limit: bool = False,
    normalization_rule_name: str = "nmt_nfkc",
    input_sentence_size: int = 0,
    max_sentence_length: int = 4192,
    num_threads: int = 1,
    seed: int = 0,
    **options,
) -> bytes:
    """Trains a SentencePiece model in memory and returns its serialized proto.

    Args:
        lines: training sentences; blank ones are skipped.
        vocab_size: requested vocabulary size, special ids included. With
            `hard_vocab_limit=False` (the default) it is an upper bound, so a
            tiny corpus yields a smaller vocabulary instead of an error.
        model_type: "unigram" or "bpe".
        character_coverage: share of characters the vocabulary must cover;
            1.0 keeps every character seen in `lines`.
        hard_vocab_limit: fail when `vocab_size` pieces cannot be found.
        normalization_rule_name: SentencePiece normalization ("nmt_nfkc",
            "nfkc", "identity", ...).
        input_sentence_size: sample at most this many sentences (0: all).
        max_sentence_length: longer sentences (in bytes) are ignored.
        num_threads: trainer threads; 1 keeps the result reproducible.
        seed: seed of SentencePiece's random generator (sentence sampling).
        **options: further `SentencePieceTrainer` options.

    Returns:
        The model proto, as accepted by `Tokenizer`.

    Raises:
        ValueError: on a bad argument or when `lines` holds no text.
    """
    if model_type not in _MODEL_TYPES:
        raise ValueError(
            f"model_type must be one of {_MODEL_TYPES}, got {model_type!r}"
        )
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise ValueError(f"vocab_size must be an integer, got {vocab_size!r}")
    if vocab_size <= END_ID + 1:
        raise ValueError(f"vocab_size must be > {END_ID + 1}, got {vocab_size}")
    if not 0.0 < character_coverage <= 1.0:
        raise ValueError(
            f"character_coverage must be in (0, 1], got {character_coverage}"
        )

    # A stream, not a list: with `input_sentence_size`, SentencePiece keeps
    # only its seeded sample of the corpus in memory.
    stripped = (line.strip() for line in lines)
    sentences = (line for line in stripped if line)
    first = next(sentences, None)
    if first is None:
        raise ValueError("no training text: every line is blank")
    sentences = itertools.chain([first], sentences)

    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        hard_vocab_limit=hard_vocab_limit,
        normalization_rule_name=normalization_rule_name,
        input_sentence_size=input_sentence_size,
        shuffle_input_sentence=True,
        max_sentence_length=max_sentence_length,
        num_threads=num_threads,
        pad_id=PADDING_ID,
        unk_id=UNK_ID,
        bos_id=START_ID,
        eos_id=END_ID,
        pad_piece="<pad>",
        unk_piece="<unk>",
        bos_piece="<s>",
        eos_piece="</s>",
        minloglevel=2,
        **options,
    )
    return model.getvalue()


class _SharedSentencepieceModel(_tf_text_sp._SentencepieceModelResource):
    """The SentencePiece op resource, registered under a shared name.

    TensorFlow Text creates the resource private to the op kernel that made
    it. In eager mode that kernel lives in the context's kernel cache, which
    `tf.random.set_seed` (and so `keras.utils.set_random_seed`) clears: the
    resource is then deleted and every later call fails with NotFoundError.
    A shared name, derived from the model bytes, keeps the resource in the
    resource manager independently of the kernel. Equal models share one
    resource; it lives as long as the process (or the served model).
    """

    def _create_resource(self):
        digest = hashlib.sha256(self._model).hexdigest()[:24]
        with tf.name_scope("SentencepieceModel"):
            return _tf_text_sp.gen_sentencepiece_tokenizer.sentencepiece_op(
                model=self._model, shared_name=f"keras_tfm_sentencepiece_{digest}"
            )


def _string_batch(strings):
    """A str, list of str or tf.string tensor as a string tensor; a scalar
    becomes a batch of one."""
    strings = tf.convert_to_tensor(strings, dtype=tf.string)
    if strings.shape.rank == 0:
        strings = tf.expand_dims(strings, 0)
    return strings


class Tokenizer(tf.Module):
    """A SentencePiece model applied with TensorFlow Text ops.

    `tokenize` and `detokenize` use graph ops only, so they can be called
    eagerly, inside `tf.data` pipelines, or traced into a served
    `tf.function`. The underlying op resource is tracked by this module and
    saved along with any SavedModel that holds it.

    Args:
        model_proto: a serialized SentencePiece model whose pad id is 0 and
            which defines start and end ids (as `train_sentencepiece` does).
        name: module name.

    Raises:
        ValueError: when the proto is not a usable SentencePiece model.
    """

    def __init__(self, model_proto: bytes, name: str | None = None):
        super().__init__(name=name)
        model_proto = bytes(model_proto)
        processor = spm.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(model_proto)
        except Exception as error:  # sentencepiece raises a bare RuntimeError
            raise ValueError(f"not a SentencePiece model: {error}") from None
        if processor.pad_id() != PADDING_ID:
            raise ValueError(
                f"the model's pad id must be {PADDING_ID}, got {processor.pad_id()}"
            )
        if processor.bos_id() < 0 or processor.eos_id() < 0:
            raise ValueError("the model must define start (bos) and end (eos) ids")
        self._model_proto = model_proto
        self._vocab_size = processor.get_piece_size()
        self._unk_id = processor.unk_id()
        self._start_id = processor.bos_id()
        self._end_id = processor.eos_id()
        self._sentencepiece = tf_text.SentencepieceTokenizer(
            model=model_proto, out_type=tf.int32
        )
        self._sentencepiece._model_resource = _SharedSentencepieceModel(
            model_proto, None
        )

    @property
    def model_proto(self) -> bytes:
        """The serialized SentencePiece model."""
        return self._model_proto

    @property
    def vocab_size(self) -> int:
        """Number of ids, special ids included."""
        return self._vocab_size

    def pieces(self) -> list[str]:
        """Every id's piece, in id order (special ids as SentencePiece names
        them, e.g. `<pad>`)."""
        processor = spm.SentencePieceProcessor()
        processor.LoadFromSerializedProto(self._model_proto)
        return [processor.id_to_piece(i) for i in range(self._vocab_size)]

    @property
    def pad_id(self) -> int:
        return PADDING_ID

    @property
    def unk_id(self) -> int:
        return self._unk_id

    @property
    def start_id(self) -> int:
        return self._start_id

    @property
    def end_id(self) -> int:
        return self._end_id

    def tokenize(self, strings) -> tf.RaggedTensor:
        """Splits text into subword ids, without start or end ids.

        Args:
            strings: a str, a list of str or a tf.string tensor. A scalar is
                treated as a batch of one.

        Returns:
            int32 `tf.RaggedTensor` of shape `strings.shape + (None,)`
            (`(1, None)` for a scalar).
        """
        return self._sentencepiece.tokenize(_string_batch(strings))

    def sampler(self, alpha: float, nbest_size: int = -1):
        """A function that tokenizes like `tokenize`, but draws one of the
        possible segmentations at random: subword regularisation for
        training pipelines.

        For a BPE model each merge is skipped with probability `alpha`
        (BPE-dropout, Provilkov et al., 2020); for a unigram model
        segmentations are drawn with probability proportional to their
        likelihood to the power `alpha` among the `nbest_size` best (-1: all;
        Kudo, 2018). The draws come from SentencePiece's own generator, which
        TensorFlow's seeds do not reach, so sampled pipelines are not
        repeatable run to run.

        Args:
            alpha: as above, in (0, 1).
            nbest_size: candidates for unigram sampling: -1 (all) or 2 to 512.

        Returns:
            A function from strings (as for `tokenize`) to int32 ragged ids.
        """
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if nbest_size != -1 and not 2 <= nbest_size <= MAX_NBEST_SIZE:
            raise ValueError(
                f"nbest_size must be -1 or in [2, {MAX_NBEST_SIZE}], got {nbest_size}"
            )
        # A second op wrapper on the same model resource, not kept on this
        # module: only the sampling arguments, passed to the op with each
        # call, differ, and nothing new is tracked or exported.
        sampling = tf_text.SentencepieceTokenizer(
            model=self._model_proto,
            out_type=tf.int32,
            nbest_size=nbest_size,
            alpha=alpha,
        )
        sampling._model_resource = self._sentencepiece._model_resource

        return lambda strings: sampling.tokenize(_string_batch(strings))

    def tokenize_source(self, strings, max_length: int) -> tf.RaggedTensor:
        """Source ids as the model was trained on them: the subword ids and
        the end id, at most `max_length` in all (longer sentences are cut
        before the end id). A sentence without pieces (empty, or only
        whitespace) stays empty, so the model translates it to nothing.

        Args:
            strings: as for `tokenize`.
            max_length: the most ids per sentence, end id included (>= 1).

        Returns:
            int32 `tf.RaggedTensor` `(batch, None)`.
        """
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        ids = self.tokenize(strings)[:, : max_length - 1]
        ends = tf.cast(ids.row_lengths() > 0, tf.int64)
        end = tf.RaggedTensor.from_row_lengths(
            tf.fill([tf.reduce_sum(ends)], tf.constant(self._end_id, tf.int32)), ends
        )
        return tf.concat([ids, end], axis=1)

    def detokenize(self, ids) -> tf.Tensor:
        """Turns id sequences back into text.

        Pad, start and end ids are dropped, as is everything after the first
        end id, so decoder output can be passed in as it is.

        Args:
            ids: int tensor `(batch, length)`, dense (padded with 0) or
                ragged; or a single dense sequence `(length,)`.

        Returns:
            tf.string tensor `(batch,)`, or a scalar for a single sequence.
        """
        if isinstance(ids, tf.RaggedTensor):
            ids = ids.to_tensor(default_value=PADDING_ID)
        ids = tf.cast(tf.convert_to_tensor(ids), tf.int32)
        single = ids.shape.rank == 1
        if single:
            ids = tf.expand_dims(ids, 0)
        ends_seen = tf.cumsum(tf.cast(tf.equal(ids, self._end_id), tf.int32), axis=1)
        keep = (
            tf.equal(ends_seen, 0)
            & tf.not_equal(ids, PADDING_ID)
            & tf.not_equal(ids, self._start_id)
        )
        text = self._sentencepiece.detokenize(tf.ragged.boolean_mask(ids, keep))
        return text[0] if single else text

    def save(self, path) -> Path:
        """Writes the `.model` file atomically and returns its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(path, self._model_proto)

    @classmethod
    def load(cls, path, name: str | None = None) -> "Tokenizer":
        """Reads a `.model` file written by `save` (or by `spm_train`)."""
        return cls(Path(path).read_bytes(), name=name)
