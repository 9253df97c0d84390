"""The decoder stack, with caches for incremental decoding."""

import keras

from keras_tfm.layers.decoder_layer import DecoderLayer
from keras_tfm.layers.dropout import Dropout
from keras_tfm.layers.encoder import Encoder
from keras_tfm.layers.layer_normalization import LayerNormalization
from keras_tfm.layers.positional_encoding import PositionalEncoding


@keras.saving.register_keras_serializable(package="keras_tfm")
class Decoder(Encoder):
    """Positional encoding, dropout and a stack of N `DecoderLayer`s.

    Like `Encoder`, it takes already embedded tokens so the embedding can be
    shared. Under `pre_norm` a final LayerNorm closes the stack.

    Args:
        Same as `Encoder`.

    Call arguments:
        decoder_sequence: embedded target `(batch, target_length, d_model)`.
        encoder_sequence: encoder output `(batch, source_length, d_model)`;
            may be None when `cross_attention_cache` is given.
        decoder_sequence_mask, encoder_sequence_mask: padding masks, filled
            from the inputs' Keras masks when not given.
        self_attention_cache: a tuple with one `(keys, values)` pair per
            layer, each `(batch, num_heads, max_length, key_dim)`, from
            `initial_self_attention_cache`. One pair per layer (rather than
            one stacked tensor) lets each step update each layer's cache in
            place instead of copying all of them.
        self_attention_cache_update_index: position of the first element of
            `decoder_sequence`; also the positional-encoding offset.
        cross_attention_cache: a tuple with one `(keys, values)` pair per
            layer, from `compute_cross_attention_cache`.
        grow_self_attention_cache: append each step's keys and values to
            caches that start empty (`initial_self_attention_cache(batch,
            0)`) instead of writing into preallocated ones: less memory
            traffic, but shapes that change every step (TensorFlow graphs
            and eager execution, not XLA or `jax.jit`).
        training: enables dropout.
        return_attention_scores: also return each layer's cross-attention
            weights, a tuple of `(batch, num_heads, target_length,
            source_length)` (not with caches).

    Returns:
        `(batch, target_length, d_model)`, or with caches
        `(outputs, self_attention_cache, cross_attention_cache)`, or with
        `return_attention_scores` `(outputs, cross_attention_weights)`.

    Masking: causal self-attention always; target padding in self-attention
    and source padding in cross-attention.

    Example (one cached step):
    >>> cache = decoder.initial_self_attention_cache(batch_size, max_length)
    >>> memory_cache = decoder.compute_cross_attention_cache(memory)
    >>> x, cache, memory_cache = decoder(
    ...     embed(ids_at_t), None, encoder_sequence_mask=source_mask,
    ...     self_attention_cache=cache, self_attention_cache_update_index=t,
    ...     cross_attention_cache=memory_cache)

    Reference: "Attention Is All You Need", sections 3.1 and 3.5.
    """

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        policy = self.dtype_policy
        self.d_model = decoder_sequence_shape[-1]
        self.positional_encoding = PositionalEncoding(
            self.max_length, dtype=policy, name="positional_encoding"
        )
        self.embedding_dropout = Dropout(
            self.dropout, dtype=policy, name="embedding_dropout"
        )
        self.decoder_layers = []
        for index in range(self.num_layers):
            layer = DecoderLayer(
                self.num_heads,
                self.d_ff,
                dropout=self.dropout,
                attention_dropout=self.attention_dropout,
                activation=self.activation,
                pre_norm=self.pre_norm,
                layer_norm_epsilon=self.layer_norm_epsilon,
                dtype=policy,
                name=f"decoder_layer_{index}",
            )
            layer.build(decoder_sequence_shape, encoder_sequence_shape)
            self.decoder_layers.append(layer)
        self.final_norm = None
        if self.pre_norm:
            self.final_norm = LayerNormalization(
                epsilon=self.layer_norm_epsilon, dtype=policy, name="final_norm"
            )
            self.final_norm.build(decoder_sequence_shape)
        self.built = True

    def initial_self_attention_cache(self, batch_size, max_length):
        """Per layer, zero `(keys, values)` `(batch, num_heads, max_length,
        key_dim)`; `max_length` 0 for a cache that grows."""
        return tuple(
            layer.self_attention.initial_cache(batch_size, max_length, self.d_model)
            for layer in self.decoder_layers
        )

    def compute_cross_attention_cache(self, encoder_sequence):
        """Per layer, the keys and values of the encoder output."""
        return tuple(
            layer.cross_attention.compute_cache(encoder_sequence)
            for layer in self.decoder_layers
        )

    def call(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_sequence_mask=None,
        encoder_sequence_mask=None,
        self_attention_cache=None,
        self_attention_cache_update_index=None,
        cross_attention_cache=None,
        grow_self_attention_cache=False,
        training=None,
        return_attention_scores=False,
    ):
        if return_attention_scores and self_attention_cache is not None:
            raise ValueError("return_attention_scores needs a call without caches")
        if decoder_sequence_mask is None:
            decoder_sequence_mask = getattr(decoder_sequence, "_keras_mask", None)
        if encoder_sequence_mask is None and encoder_sequence is not None:
            encoder_sequence_mask = getattr(encoder_sequence, "_keras_mask", None)
        use_cache = self_attention_cache is not None
        start = self_attention_cache_update_index if use_cache else 0
        x = self.positional_encoding(decoder_sequence, start_index=start)
        x = self.embedding_dropout(x, training=training)
        new_self_caches, new_cross_caches = [], []
        for index, layer in enumerate(self.decoder_layers):
            if use_cache:
                x, layer_cache, layer_cross = layer(
                    x,
                    encoder_sequence,
                    decoder_sequence_mask=decoder_sequence_mask,
                    encoder_sequence_mask=encoder_sequence_mask,
                    self_attention_cache=self_attention_cache[index],
                    self_attention_cache_update_index=start,
                    cross_attention_cache=(
                        None
                        if cross_attention_cache is None
                        else cross_attention_cache[index]
                    ),
                    grow_self_attention_cache=grow_self_attention_cache,
                    training=training,
                )
                new_self_caches.append(layer_cache)
                new_cross_caches.append(layer_cross)
            else:
                x = layer(
                    x,
                    encoder_sequence,
                    decoder_sequence_mask=decoder_sequence_mask,
                    encoder_sequence_mask=encoder_sequence_mask,
                    training=training,
                    return_attention_scores=return_attention_scores,
                )
                if return_attention_scores:
                    x, weights = x
                    new_cross_caches.append(weights)
        if self.final_norm is not None:
            x = self.final_norm(x)
        if return_attention_scores:
            return x, tuple(new_cross_caches)
        if not use_cache:
            return x
        if cross_attention_cache is None:
            cross_attention_cache = self.compute_cross_attention_cache(encoder_sequence)
        return x, tuple(new_self_caches), cross_attention_cache

    def compute_output_shape(self, decoder_sequence_shape, encoder_sequence_shape=None):
        return decoder_sequence_shape
