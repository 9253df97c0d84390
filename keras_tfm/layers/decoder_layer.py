"""One decoder layer: causal self-attention, cross-attention, feed-forward."""

import keras

from keras_tfm.layers.dropout import Dropout
from keras_tfm.layers.encoder_layer import EncoderLayer, residual
from keras_tfm.layers.layer_normalization import LayerNormalization
from keras_tfm.layers.multi_head_attention import MultiHeadAttention
from keras_tfm.layers.positionwise_feed_forward import PositionwiseFeedForward


@keras.saving.register_keras_serializable(package="keras_tfm")
class DecoderLayer(EncoderLayer):
    """Masked self-attention, encoder-decoder attention and a feed-forward.

    Self-attention is causal: position i attends to target positions <= i
    only. Encoder-decoder attention takes queries from the decoder and keys
    and values from the encoder output. Each of the three sublayers is
    wrapped post-LN `LayerNorm(x + Dropout(Sublayer(x)))` as in the paper,
    or pre-LN with `pre_norm=True`.

    Args:
        num_heads, d_ff, dropout, attention_dropout, activation, pre_norm,
        layer_norm_epsilon: as for `EncoderLayer` (whose constructor and
        config this layer shares).
        **kwargs: standard layer arguments.

    Call arguments:
        decoder_sequence: `(batch, target_length, d_model)`.
        encoder_sequence: `(batch, source_length, d_model)`, the encoder
            output. May be None when `cross_attention_cache` is given.
        decoder_sequence_mask: target padding mask `(batch, target_length)`;
            filled from the Keras mask of `decoder_sequence`.
        encoder_sequence_mask: source padding mask `(batch, source_length)`;
            filled from the Keras mask of `encoder_sequence`. Needed during
            cached decoding too, where no encoder tensor is passed.
        self_attention_mask: optional extra boolean
            `(batch, target_length, target_length)` mask.
        self_attention_cache: `(keys, values)` from
            `self.self_attention.initial_cache`, each `(batch, num_heads,
            max_length, key_dim)`.
        self_attention_cache_update_index: where `decoder_sequence` starts
            inside the cache.
        cross_attention_cache: `(keys, values)` from
            `self.cross_attention.compute_cache(encoder_out)`.
        grow_self_attention_cache: append this step's keys and values to
            the self-attention cache instead of writing them at
            `self_attention_cache_update_index` (see `MultiHeadAttention`).
        training: enables dropout.
        return_attention_scores: also return the cross-attention weights
            `(batch, num_heads, target_length, source_length)` (not with
            caches).

    Returns:
        `(batch, target_length, d_model)`; with caches,
        `(outputs, self_attention_cache, cross_attention_cache)`; with
        `return_attention_scores`, `(outputs, cross_attention_weights)`.

    Masking: the causal mask is always applied to self-attention; target
    padding masks self-attention keys and source padding masks
    cross-attention keys.

    Example:
    >>> layer = DecoderLayer(num_heads=8, d_ff=2048)
    >>> memory = keras.random.normal((2, 12, 512))
    >>> y = layer(keras.random.normal((2, 9, 512)), memory)

    Reference: "Attention Is All You Need", section 3.1.
    """

    def _norm(self, name, shape):
        norm = LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name
        )
        norm.build(shape)
        return norm

    def _dropout(self, name):
        return Dropout(self.dropout, dtype=self.dtype_policy, name=name)

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        shape = decoder_sequence_shape
        memory_shape = encoder_sequence_shape or shape
        self.self_attention = MultiHeadAttention(
            self.num_heads,
            dropout=self.attention_dropout,
            dtype=self.dtype_policy,
            name="self_attention",
        )
        self.self_attention.build(shape, shape)
        self.self_attention_norm = self._norm("self_attention_norm", shape)
        self.self_attention_dropout = self._dropout("self_attention_dropout")
        self.cross_attention = MultiHeadAttention(
            self.num_heads,
            dropout=self.attention_dropout,
            dtype=self.dtype_policy,
            name="cross_attention",
        )
        self.cross_attention.build(shape, memory_shape)
        self.cross_attention_norm = self._norm("cross_attention_norm", shape)
        self.cross_attention_dropout = self._dropout("cross_attention_dropout")
        self.feed_forward = PositionwiseFeedForward(
            self.d_ff,
            activation=self.activation,
            dtype=self.dtype_policy,
            name="feed_forward",
        )
        self.feed_forward.build(shape)
        self.feed_forward_norm = self._norm("feed_forward_norm", shape)
        self.feed_forward_dropout = self._dropout("feed_forward_dropout")
        self.built = True

    def call(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_sequence_mask=None,
        encoder_sequence_mask=None,
        self_attention_mask=None,
        self_attention_cache=None,
        self_attention_cache_update_index=None,
        cross_attention_cache=None,
        grow_self_attention_cache=False,
        training=None,
        return_attention_scores=False,
    ):
        if return_attention_scores and (
            self_attention_cache is not None or cross_attention_cache is not None
        ):
            raise ValueError("return_attention_scores needs a call without caches")
        if decoder_sequence_mask is None:
            decoder_sequence_mask = getattr(decoder_sequence, "_keras_mask", None)
        if encoder_sequence_mask is None and encoder_sequence is not None:
            encoder_sequence_mask = getattr(encoder_sequence, "_keras_mask", None)
        use_cache = self_attention_cache is not None
        x = decoder_sequence

        normed = self.self_attention_norm(x) if self.pre_norm else x
        if use_cache:
            attended, self_attention_cache = self.self_attention(
                normed,
                normed,
                value_mask=None,
                attention_mask=self_attention_mask,
                cache=self_attention_cache,
                cache_update_index=self_attention_cache_update_index,
                grow_cache=grow_self_attention_cache,
                training=training,
            )
        else:
            attended = self.self_attention(
                normed,
                normed,
                query_mask=decoder_sequence_mask,
                value_mask=decoder_sequence_mask,
                attention_mask=self_attention_mask,
                use_causal_mask=True,
                training=training,
            )
        x = residual(
            x,
            attended,
            self.self_attention_norm,
            self.self_attention_dropout,
            self.pre_norm,
            training,
        )

        normed = self.cross_attention_norm(x) if self.pre_norm else x
        if cross_attention_cache is not None:
            attended, cross_attention_cache = self.cross_attention(
                normed,
                value_mask=encoder_sequence_mask,
                cache=cross_attention_cache,
                training=training,
            )
        else:
            attended = self.cross_attention(
                normed,
                encoder_sequence,
                query_mask=None if use_cache else decoder_sequence_mask,
                value_mask=encoder_sequence_mask,
                return_attention_scores=return_attention_scores,
                training=training,
            )
            if return_attention_scores:
                attended, cross_weights = attended
        x = residual(
            x,
            attended,
            self.cross_attention_norm,
            self.cross_attention_dropout,
            self.pre_norm,
            training,
        )

        normed = self.feed_forward_norm(x) if self.pre_norm else x
        transformed = self.feed_forward(normed, training=training)
        x = residual(
            x,
            transformed,
            self.feed_forward_norm,
            self.feed_forward_dropout,
            self.pre_norm,
            training,
        )
        if use_cache or cross_attention_cache is not None:
            return x, self_attention_cache, cross_attention_cache
        if return_attention_scores:
            return x, cross_weights
        return x

    def compute_output_shape(self, decoder_sequence_shape, encoder_sequence_shape=None):
        return decoder_sequence_shape
