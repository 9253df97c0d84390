"""The encoder-decoder Transformer as one functional Keras model."""

import keras

from keras_tfm.decoding.generation import generate
from keras_tfm.decoding.translator import make_translator
from keras_tfm.layers import Decoder, Encoder, OutputLogits, TokenEmbedding
from keras_tfm.models.transformer_config import TransformerConfig


@keras.saving.register_keras_serializable(package="keras_tfm")
class Transformer(keras.Model):
    """The Transformer of "Attention Is All You Need" (Vaswani et al., 2017).

    A functional `keras.Model`: the graph from token ids to logits is built
    in `__init__` from keras_tfm's layers, so the model trains with
    `model.fit`, saves to `.keras` and reloads from its `TransformerConfig`
    alone (`get_config`/`from_config`). It carries its parts (`encoder`,
    `decoder`, the embeddings, `project`) and decodes with `generate`.

    Inputs: a dict `{"source": ids, "target": ids}` of int32 tensors
    `(batch, length)` of any length. `target` is the decoder input (the
    shifted target, starting with the start token). Output: float32 logits
    `(batch, target_length, tgt_vocab_size)`.

    Masking: id 0 (`keras_tfm.constants.PADDING_ID`) is padding on both
    sides. The embeddings emit Keras masks: padded source positions are
    never attended to, the decoder's self-attention is causal and skips
    padded target positions, and the logits at a padded target position
    are unspecified (the loss and metrics skip them).

    Args:
        config: a `TransformerConfig` (or its dict).
        source_tokenizer, target_tokenizer: optional `keras_tfm.text`
            tokenizers; with them `generate` takes and returns strings.
            They are not saved with the model (`keras-tfm train` keeps them
            in the run directory; `keras_tfm.load_run` attaches them).
        dtype: the dtype policy of every layer ("float32",
            "mixed_bfloat16", ...; default: Keras' global policy).
        **kwargs: `keras.Model` arguments (`name`, ...).

    Example:
    >>> config = TransformerConfig.preset("tiny", src_vocab_size=1000,
    ...                                   tgt_vocab_size=1000)
    >>> model = Transformer(config)
    >>> logits = model({"source": source_ids, "target": target_ids})
    >>> tokens, scores = model.generate(source_ids)  # beam 4, penalty 0.6
    >>> run = keras_tfm.load_run("runs/multi30k_de_en")
    >>> run.generate(["Ein Mann fährt Fahrrad."])    # one English sentence
    """

    def __init__(
        self,
        config,
        source_tokenizer=None,
        target_tokenizer=None,
        dtype=None,
        **kwargs,
    ):
        if isinstance(config, dict):
            config = TransformerConfig.from_dict(config)
        kwargs.setdefault("name", "transformer")
        # Every layer computes under one dtype policy (None: Keras' global
        # one when the model is built), saved with the model.
        dtype = keras.dtype_policies.get(dtype or keras.config.dtype_policy())
        # === Layers ===
        if config.share_embeddings:
            source_embedding = TokenEmbedding(
                config.src_vocab_size,
                config.d_model,
                dtype=dtype,
                name="shared_embedding",
            )
            target_embedding = source_embedding
        else:
            source_embedding = TokenEmbedding(
                config.src_vocab_size,
                config.d_model,
                dtype=dtype,
                name="source_embedding",
            )
            target_embedding = TokenEmbedding(
                config.tgt_vocab_size,
                config.d_model,
                dtype=dtype,
                name="target_embedding",
            )
        stack_args = dict(
            num_heads=config.num_heads,
            d_ff=config.d_ff,
            dropout=config.dropout,
            attention_dropout=config.attention_dropout,
            activation=config.activation,
            pre_norm=config.pre_norm,
            layer_norm_epsilon=config.layer_norm_epsilon,
            max_length=config.max_length,
            dtype=dtype,
        )
        encoder = Encoder(config.num_encoder_layers, name="encoder", **stack_args)
        decoder = Decoder(config.num_decoder_layers, name="decoder", **stack_args)
        output_logits = None
        if not config.tie_output:
            output_logits = OutputLogits(
                config.tgt_vocab_size, dtype=dtype, name="output_logits"
            )

        # === Functional graph ===
        source = keras.Input(shape=(None,), dtype="int32", name="source")
        target = keras.Input(shape=(None,), dtype="int32", name="target")
        memory = encoder(source_embedding(source))
        hidden = decoder(target_embedding(target), memory)
        if output_logits is None:
            logits = target_embedding(hidden, reverse=True)
        else:
            logits = output_logits(hidden)
        super().__init__(
            inputs={"source": source, "target": target}, outputs=logits, **kwargs
        )

        # === Parts and config ===
        self.config = config
        self.source_embedding = source_embedding
        self.target_embedding = target_embedding
        self.encoder = encoder
        self.decoder = decoder
        self.output_logits = output_logits
        self.attach_tokenizers(source_tokenizer, target_tokenizer)

    def project(self, hidden):
        """Decoder states `(..., d_model)` -> float32 logits over the target
        vocabulary (the tied target embedding, or `output_logits`)."""
        if self.output_logits is None:
            return self.target_embedding(hidden, reverse=True)
        return self.output_logits(hidden)

    def attach_tokenizers(self, source_tokenizer, target_tokenizer):
        """Gives the model its tokenizers, so that `generate` takes strings.

        Kept in a plain holder rather than as attributes: Keras and
        TensorFlow would otherwise track them as parts of the model.
        """
        previous = getattr(self, "_attached", None)
        self._attached = _Attached(source_tokenizer, target_tokenizer)
        if previous is not None:
            self._attached.options = previous.options
        return self

    def with_default_options(self, options):
        """Makes `options` (`DecodingOptions`) what `generate` decodes with
        when it is given none (e.g. a finished run's `[evaluation]`
        settings); returns the model."""
        self._attached.options = options
        return self

    @property
    def source_tokenizer(self):
        return self._attached.source

    @property
    def target_tokenizer(self):
        return self._attached.target

    @property
    def default_options(self):
        """The `DecodingOptions` `generate` uses when given none (None: the
        paper's, `DecodingOptions()`)."""
        return self._attached.options

    def generate(self, inputs, options=None, **kwargs):
        """Translates a batch.

        Args:
            inputs: int token ids `(batch, source_length)`, 0-padded, as
                `keras_tfm.generate` takes them; or, when the model carries
                its tokenizers, a list of sentences (`str`).
            options: `keras_tfm.DecodingOptions` (default:
                `default_options`, else beam search with 4 beams, length
                penalty 0.6, up to the model's `max_length` tokens).
            **kwargs: more `keras_tfm.generate` arguments, e.g. `n_best`
                or `min_length`; for strings only `batch_size` (64).

        Returns:
            For ids, `(token_ids, scores)` as `keras_tfm.generate`. For
            strings, the list of translations.
        """
        if options is None:
            options = self.default_options
        if isinstance(inputs, str):
            raise TypeError(
                "Transformer.generate: pass a list of sentences, not one string"
            )
        if isinstance(inputs, (list, tuple)) and all(
            isinstance(item, str) for item in inputs
        ):
            if self.source_tokenizer is None or self.target_tokenizer is None:
                raise ValueError(
                    "Transformer.generate: strings need tokenizers; load the "
                    "model with keras_tfm.load_run or call attach_tokenizers"
                )
            batch_size = kwargs.pop("batch_size", 64)
            if kwargs:
                raise TypeError(
                    "Transformer.generate: for sentences, pass decoding settings "
                    f"as options; unexpected {sorted(kwargs)}"
                )
            key = (options, batch_size)
            if key not in self._attached.translators:
                self._attached.translators[key] = make_translator(
                    self,
                    self.source_tokenizer,
                    self.target_tokenizer,
                    options,
                    batch_size,
                )
            return self._attached.translators[key](list(inputs))
        return generate(self, inputs, options, **kwargs)

    def get_config(self):
        # The layers are rebuilt from the TransformerConfig; the functional
        # graph's own config is not needed.
        return {
            "config": self.config.to_dict(),
            "dtype": keras.dtype_policies.serialize(self.encoder.dtype_policy),
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(TransformerConfig.from_dict(config.pop("config")), **config)


class _Attached:
    """Tokenizers, default decoding options and the translators built on
    them: held here, out of Keras' and TensorFlow's attribute tracking."""

    def __init__(self, source, target):
        self.source, self.target = source, target
        self.options = None
        self.translators = {}  # compiled, per (options, batch size)


def build_transformer(config):
    """`Transformer(config)`: the model, from a `TransformerConfig` or dict."""
    return Transformer(config)


def with_dtype_policy(model, policy):
    """A copy of a `Transformer` under another dtype policy ("float32",
    "bfloat16", "mixed_bfloat16", ...), with the same weights (cast to the
    policy's variable dtype) and tokenizers."""
    copy = Transformer(model.config, dtype=policy)
    copy.set_weights(model.get_weights())
    copy.attach_tokenizers(model.source_tokenizer, model.target_tokenizer)
    return copy.with_default_options(model.default_options)
