"""Multi-head attention with a key/value cache for incremental decoding."""

import math

import keras
from keras import ops

from keras_tfm.layers.scaled_dot_product_attention import (
    scaled_dot_product_attention,
)


def causal_mask(query_length, key_length, query_offset=0):
    """Boolean `(query_length, key_length)`: query i may see keys <= offset+i."""
    rows = ops.arange(query_length, dtype="int32")[:, None] + ops.cast(
        query_offset, "int32"
    )
    cols = ops.arange(key_length, dtype="int32")[None, :]
    return ops.greater_equal(rows, cols)


def write_cache(cache, start, keys, values):
    """`cache` with `keys` and `values` written at positions `start`, ....

    Args:
        cache: `(cached_keys, cached_values)`, each `(batch, num_heads,
            cache_length, key_dim)`.
        start: int or scalar int tensor, the position of the first entry.
        keys, values: `(batch, length, num_heads, key_dim)`.

    A scatter rather than `keras.ops.slice_update`: Keras' TensorFlow backend
    writes `slice_update` as the XLA op `XlaDynamicUpdateSlice`, which plain
    TensorFlow (and so a stock TF Serving graph) can only run by compiling
    it with XLA. `tensor_scatter_nd_update` is a core op, and XLA compiles it
    into an in-place update of the loop-carried cache.
    """
    batch, heads, length = ops.shape(keys)[0], keys.shape[2], ops.shape(keys)[1]
    grid = (batch, heads, length)
    coordinates = [
        ops.arange(batch, dtype="int32")[:, None, None],
        ops.arange(heads, dtype="int32")[None, :, None],
        ops.arange(length, dtype="int32")[None, None, :] + ops.cast(start, "int32"),
    ]
    indices = ops.stack([ops.broadcast_to(c, grid) for c in coordinates], axis=-1)
    indices = ops.reshape(indices, (-1, 3))
    written = []
    for cached, new in zip(cache, (keys, values)):
        updates = ops.reshape(ops.transpose(new, (0, 2, 1, 3)), (-1, cached.shape[-1]))
        written.append(
            ops.scatter_update(cached, indices, ops.cast(updates, cached.dtype))
        )
    return tuple(written)


def append_to_cache(cache, keys, values):
    """`cache` with `keys` and `values` `(batch, length, heads, key_dim)`
    appended along its length axis (a cache that grows as decoding goes)."""
    return tuple(
        ops.concatenate(
            [cached, ops.cast(ops.transpose(new, (0, 2, 1, 3)), cached.dtype)], axis=2
        )
        for cached, new in zip(cache, (keys, values))
    )


@keras.saving.register_keras_serializable(package="keras_tfm")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention, section 3.2.2 of the paper.

    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,
    head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V), with d_k = d_model / h.

    Serves as self-attention (`query` is `value`) and as encoder-decoder
    attention (queries from the decoder, keys and values from the encoder).
    Kernels have the same shapes as `keras.layers.MultiHeadAttention`
    (`(d_model, h, d_k)` in, `(h, d_k, d_model)` out), so weights copy across.

    Args:
        num_heads: h.
        key_dim: d_k per head; defaults to d_model // num_heads.
        dropout: dropout on the attention weights (the paper uses none).
        use_bias: biases on the four projections.
        kernel_initializer, bias_initializer: for the projections.
        **kwargs: standard layer arguments.

    Call arguments:
        query: `(batch, query_length, d_model)`.
        value: `(batch, key_length, d_model)`; may be None when a
            precomputed cross-attention `cache` is given.
        key: defaults to `value`.
        query_mask, value_mask, key_mask: boolean padding masks
            `(batch, length)`; Keras masks on the inputs fill these in.
        attention_mask: boolean `(batch, query_length, key_length)`, True
            where a query may attend to a key.
        use_causal_mask: forbid attending to later positions.
        cache: `(keys, values)`, each `(batch, num_heads, cache_length,
            key_dim)` (heads first: attention reads them in place).
            * with `cache_update_index=None`, keys and values are read from
              the cache as they are (cross-attention: computed once per
              source by `compute_cache`);
            * with an integer `cache_update_index`, the keys and values of
              `value` are written at that position and attention runs over
              the whole cache, with a causal mask relative to that position
              unless `attention_mask` is given (self-attention decoding);
            * with `grow_cache=True`, they are appended to the cache instead,
              which then holds exactly the positions decoded so far (a
              shape that changes every step: TensorFlow graphs and eager
              execution, not XLA or `jax.jit`).
        cache_update_index: int or scalar int tensor.
        grow_cache: append to the cache rather than write at an index.
        return_attention_scores: also return the weights.
        training: enables dropout.

    Returns:
        `(batch, query_length, d_model)`; with a cache, `(outputs, cache)`;
        with `return_attention_scores`, the weights are appended.

    Masking: query/value padding and the causal mask are combined with
    `attention_mask` by logical and; fully masked query rows give zeros.

    Example:
    >>> mha = MultiHeadAttention(num_heads=8)
    >>> x = keras.random.normal((2, 10, 512))
    >>> y = mha(x, x, use_causal_mask=True)
    >>> cache = mha.initial_cache(batch_size=2, max_length=10, d_model=512)
    >>> # cache: (keys, values), each (2, 8, 10, 64)
    >>> y0, cache = mha(x[:, :1], x[:, :1], cache=cache, cache_update_index=0)

    Reference: "Attention Is All You Need", section 3.2.
    """

    def __init__(
        self,
        num_heads,
        key_dim=None,
        dropout=0.0,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {num_heads}")
        self.num_heads = int(num_heads)
        self.key_dim = None if key_dim is None else int(key_dim)
        self.dropout = float(dropout)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.seed_generator = keras.random.SeedGenerator()
        self.supports_masking = True

    def _projection(self, name, equation, output_shape, bias_axes):
        # Holds the weights; `_project` applies them (fused with the others).
        return keras.layers.EinsumDense(
            equation,
            output_shape=output_shape,
            bias_axes=bias_axes if self.use_bias else None,
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, query_shape, value_shape=None, key_shape=None):
        d_model = query_shape[-1]
        if self.key_dim is None:
            if d_model % self.num_heads:
                raise ValueError(
                    f"MultiHeadAttention: d_model={d_model} is not divisible "
                    f"by num_heads={self.num_heads}"
                )
            self.key_dim = d_model // self.num_heads
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        heads = (None, self.num_heads, self.key_dim)
        self.query_dense = self._projection("query", "abc,cde->abde", heads, "de")
        self.key_dense = self._projection("key", "abc,cde->abde", heads, "de")
        self.value_dense = self._projection("value", "abc,cde->abde", heads, "de")
        self.output_dense = self._projection(
            "attention_output", "abcd,cde->abe", (None, d_model), "e"
        )
        self.query_dense.build(query_shape)
        self.key_dense.build(key_shape)
        self.value_dense.build(value_shape)
        self.output_dense.build(
            (query_shape[0], query_shape[1], self.num_heads, self.key_dim)
        )
        self.built = True

    def initial_cache(self, batch_size, max_length, d_model=None):
        """Zero `(keys, values)`, each `(batch, num_heads, max_length, key_dim)`.

        `max_length` may be 0 (or a tensor) for a cache that grows.
        """
        if self.key_dim is None:
            self.key_dim = d_model // self.num_heads
        shape = (batch_size, self.num_heads, max_length, self.key_dim)
        return (
            ops.zeros(shape, dtype=self.compute_dtype),
            ops.zeros(shape, dtype=self.compute_dtype),
        )

    def _project(self, inputs, *projections):
        """`inputs` through several input projections with one matmul.

        The projections' kernels `(d_model, heads, key_dim)` are concatenated
        into one `(d_model, n * heads * key_dim)` matrix: one large matmul
        runs faster than several small ones, and the weights stay those of
        the separate `query`/`key`/`value` layers. The query projection comes
        out multiplied by `1 / sqrt(key_dim)` (its kernel and bias are scaled:
        a product over the weights instead of one over every attention
        score). Returns one `(batch, length, heads, key_dim)` tensor per
        projection.
        """
        d_model = inputs.shape[-1]
        width = self.num_heads * self.key_dim
        batch, length = ops.shape(inputs)[0], ops.shape(inputs)[1]
        shape = (batch, length, self.num_heads, self.key_dim)
        scale = 1.0 / math.sqrt(self.key_dim)

        def kernel(p):
            k = ops.reshape(p.kernel, (d_model, width))
            return k * ops.cast(scale, k.dtype) if p is self.query_dense else k

        def bias(p):
            b = ops.reshape(p.bias, (width,))
            return b * ops.cast(scale, b.dtype) if p is self.query_dense else b

        if inputs.shape[1] == 1:
            # One decoding step: joining the kernels would copy them at every
            # step for one small product; project separately.
            flat = ops.reshape(inputs, (-1, d_model))
            outputs = []
            for p in projections:
                out = ops.matmul(flat, kernel(p))
                if self.use_bias:
                    out = out + bias(p)
                outputs.append(ops.reshape(out, shape))
            return outputs
        joined = ops.concatenate([kernel(p) for p in projections], axis=-1)
        outputs = ops.matmul(ops.reshape(inputs, (-1, d_model)), joined)
        # The bias is added after the reshape: oneDNN's fused matmul + bias
        # kernel is slower on bfloat16 than the plain matmul and an add.
        outputs = ops.reshape(outputs, (batch, length, len(projections) * width))
        if self.use_bias:
            outputs = outputs + ops.concatenate([bias(p) for p in projections], 0)
        # split (whose gradient is a concat), not slicing (whose gradient
        # scatters into zeros of the full size).
        parts = ops.split(outputs, len(projections), axis=-1)
        return [ops.reshape(part, shape) for part in parts]

    def _output_projection(self, attended):
        """`(batch, length, heads, key_dim)` -> `(batch, length, d_model)`."""
        dense = self.output_dense
        d_model = dense.kernel.shape[-1]
        batch, length = ops.shape(attended)[0], ops.shape(attended)[1]
        flat = ops.reshape(attended, (-1, self.num_heads * self.key_dim))
        outputs = ops.matmul(flat, ops.reshape(dense.kernel, (-1, d_model)))
        outputs = ops.reshape(outputs, (batch, length, d_model))
        return outputs + dense.bias if self.use_bias else outputs

    def compute_cache(self, value, key=None):
        """Projected `(keys, values)` of a fixed memory (the encoder output),
        each `(batch, num_heads, length, key_dim)`."""
        if key is None:
            keys, values = self._project(value, self.key_dense, self.value_dense)
        else:
            keys = self._project(key, self.key_dense)[0]
            values = self._project(value, self.value_dense)[0]
        return tuple(ops.transpose(x, (0, 2, 1, 3)) for x in (keys, values))

    def call(
        self,
        query,
        value=None,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        cache=None,
        cache_update_index=None,
        grow_cache=False,
        return_attention_scores=False,
        training=None,
    ):
        if value is None and cache is None:
            value = query
        query_length = ops.shape(query)[1]
        reads_from_cache = (
            cache is not None and cache_update_index is None and not grow_cache
        )
        if reads_from_cache:
            query_heads = self._project(query, self.query_dense)[0]
        elif value is query and (key is None or key is query):
            query_heads, key_heads, value_heads = self._project(
                query, self.query_dense, self.key_dense, self.value_dense
            )
        else:
            query_heads = self._project(query, self.query_dense)[0]
            if key is None or key is value:
                key_heads, value_heads = self._project(
                    value, self.key_dense, self.value_dense
                )
            else:
                key_heads = self._project(key, self.key_dense)[0]
                value_heads = self._project(value, self.value_dense)[0]

        if cache is not None:
            if grow_cache:
                cache = append_to_cache(cache, key_heads, value_heads)
            elif not reads_from_cache:
                cache = write_cache(cache, cache_update_index, key_heads, value_heads)
            key_heads, value_heads = cache
            key_length = ops.shape(key_heads)[2]
            if not reads_from_cache and attention_mask is None:
                # A static cache holds zeros past the current position; a
                # grown one ends at the last query.
                offset = key_length - query_length if grow_cache else cache_update_index
                attention_mask = causal_mask(query_length, key_length, offset)[None]
                use_causal_mask = False
        else:
            key_length = ops.shape(key_heads)[1]
        mask = self._merge_masks(
            attention_mask,
            query_mask,
            value_mask if key_mask is None else key_mask,
            use_causal_mask,
            query_length,
            key_length,
        )
        if mask is not None:
            mask = ops.expand_dims(mask, 1)  # broadcast over heads
        result = scaled_dot_product_attention(
            query_heads,
            key_heads,
            value_heads,
            mask=mask,
            dropout_rate=self.dropout,
            training=training,
            seed_generator=self.seed_generator,
            return_attention_scores=return_attention_scores,
            heads_first=cache is not None,
            scale=1.0,  # applied by the query projection
        )
        if return_attention_scores:
            attended, scores = result
        else:
            attended = result
        outputs = self._output_projection(attended)
        returned = (outputs,)
        if cache is not None:
            returned += (cache,)
        if return_attention_scores:
            returned += (scores,)
        return returned[0] if len(returned) == 1 else returned

    def _merge_masks(
        self, attention_mask, query_mask, key_mask, use_causal, q_len, k_len
    ):
        mask = None
        if attention_mask is not None:
            mask = ops.cast(attention_mask, "bool")
        if key_mask is not None:
            key_mask = ops.cast(key_mask, "bool")[:, None, :]
            mask = key_mask if mask is None else ops.logical_and(mask, key_mask)
        if query_mask is not None:
            query_mask = ops.cast(query_mask, "bool")[:, :, None]
            mask = query_mask if mask is None else ops.logical_and(mask, query_mask)
        if use_causal:
            causal = causal_mask(q_len, k_len)[None]
            mask = causal if mask is None else ops.logical_and(mask, causal)
        return mask

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        return query_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
