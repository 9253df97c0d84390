"""The cached decoder step that searches run: the decoder's weights read once
per call, then one token per row through few, large operations
(`keras.ops` only).

The decoder layers compute the same function (`Decoder.call` with caches),
one Keras layer call per sublayer. Inside a search loop every layer call
adds its own casts, reshapes and index arithmetic, and TensorFlow pays a
fixed cost for each operation it runs, which at batch 1 is most of a
step's time. Here a step is, per decoder layer:

* self-attention: one product for queries, keys and values (the query
  columns pre-scaled by `1 / sqrt(key_dim)`), the keys and values appended
  to (or, with static shapes, written into) the cache, two batched products
  around a softmax, one output product;
* cross-attention: one query product, and the beams of a sentence attend to
  its encoder keys and values together, as the query rows of one batched
  product, so those keys and values are stored once per sentence, not once
  per beam;
* the feed-forward block as two products, and each LayerNorm as one
  expression.

The encoder keys and values of every layer come from one product when the
step is built. Rows are `example * repeat + beam`, as the searches lay them
out.
"""

import math

import keras
from keras import ops

from keras_tfm.constants import MASK_FILL_VALUE, PADDING_ID
from keras_tfm.layers.multi_head_attention import write_cache
from keras_tfm.layers.positional_encoding import sinusoidal_positions


def fused_decoder_step(model, source_ids, max_length, repeat, dynamic, weights=None):
    """Runs the encoder of `model` once; returns `(step, initial_state)`.

    Args:
        model: a `keras_tfm.models.Transformer` (or an object with its
            parts: `source_embedding`, `target_embedding`, `encoder`,
            `decoder`, `output_logits` or a tied target embedding).
        source_ids: int32 `(batch, source_length)`, 0-padded.
        max_length: the most decoding steps.
        repeat: decoder rows per source sentence (the beams).
        dynamic: caches that grow step by step (TensorFlow graphs and eager
            execution); else caches of `max_length` positions written in
            place (static shapes, for XLA and `jax.jit`).
        weights: `DecoderStepWeights(model, max_length)` computed ahead
            (an export keeps them as variables), or None to compute them
            in this call.

    `step(sequences, t, state) -> (logits, state)` gives float32 logits
    `(batch * repeat, vocab)` for position `t` of the int32 buffer
    `sequences` `(batch * repeat, max_length + 1)`. `state` is
    `(self_attention_caches, cross_attention_caches, memory_bias)`: the
    first follows the rows (searches reorder it with the beams), the other
    two hold one entry per sentence (`(batch, ...)`), which searches only
    gather when sentences leave the batch. The logit of the padding id is
    `MASK_FILL_VALUE`: padding is never generated.

    Masking: source padding is masked in cross-attention (an additive bias);
    self-attention sees the positions decoded so far and nothing after them
    (a growing cache holds no more; a static one is masked after `t`).

    Example (greedy, by hand):
    >>> step, state = fused_decoder_step(model, source_ids, 20, 1, True)
    >>> logits, state = step(sequences, 0, state)

    Reference: "Attention Is All You Need", sections 3.2.3 and 3.5.
    """
    source_mask = ops.not_equal(source_ids, PADDING_ID)
    memory = model.encoder(
        model.source_embedding(source_ids), mask=source_mask, training=False
    )
    if weights is None:
        weights = DecoderStepWeights(model, max_length)
    elif weights.max_length < max_length:
        raise ValueError(
            f"step weights hold {weights.max_length} positions, not {max_length}"
        )
    dtype = weights.dtype
    # (batch, 1, 1, source_length): broadcast over heads and query rows.
    memory_bias = ops.where(source_mask, 0.0, MASK_FILL_VALUE)[:, None, None, :]
    cross = weights.cross_attention_cache(memory)

    rows = ops.shape(source_ids)[0] * repeat
    length = max_length
    if dynamic:
        # A zero that shape inference cannot see through: the caches start
        # empty with a length the loop changes.
        length = ops.cast(ops.sum(ops.zeros_like(source_ids[:1, :1])), "int32")
    shape = (rows, weights.heads, length, weights.key_dim)
    caches = tuple(
        (ops.zeros(shape, dtype), ops.zeros(shape, dtype)) for _ in weights.layers
    )

    def step(sequences, t, state):
        self_caches, cross_caches, bias = state
        tokens = ops.take(sequences, t, axis=1)
        x = ops.take(weights.embeddings, tokens, axis=0)
        x = ops.cast(x, dtype) * ops.cast(weights.embedding_scale, dtype)
        x = x + weights.positions[t]
        key_bias = None
        if not dynamic:
            # The static cache holds zeros after position t.
            visible = ops.less_equal(ops.arange(max_length, dtype="int32"), t)
            key_bias = ops.where(visible, 0.0, MASK_FILL_VALUE)
        new_caches = []
        for layer, cache, memory_cache in zip(
            weights.layers, self_caches, cross_caches
        ):
            x, cache = layer(x, t, cache, key_bias, memory_cache, bias, repeat, dynamic)
            new_caches.append(cache)
        if weights.final_norm is not None:
            x = weights.final_norm(x)
        return weights.logits(x), (tuple(new_caches), cross_caches, bias)

    return step, (caches, cross, memory_bias)


def _tensor(variable, dtype):
    return ops.cast(ops.convert_to_tensor(variable), dtype)


class _Weights:
    """Tensors read by a step, held as attributes (also in lists and
    tuples, and in other `_Weights`), next to plain settings."""

    def map(self, function):
        """A copy with `function(tensor)` in place of every tensor."""
        copy = object.__new__(type(self))
        copy.__dict__ = {k: _map(function, v) for k, v in self.__dict__.items()}
        return copy

    def tensors(self):
        """Every tensor, in a fixed order."""
        found = []
        self.map(lambda x: found.append(x) or x)
        return found


def _map(function, value):
    if isinstance(value, _Weights):
        return value.map(function)
    if isinstance(value, (list, tuple)):
        return type(value)(_map(function, v) for v in value)
    if ops.is_tensor(value) or isinstance(value, keras.Variable):
        return function(value)
    return value


class _Norm(_Weights):
    """A `LayerNormalization`'s weights; normalises in at least float32."""

    def __init__(self, layer, dtype):
        self.compute = keras.backend.result_type(dtype, "float32")
        self.gamma = _tensor(layer.gamma, self.compute)
        self.beta = _tensor(layer.beta, self.compute)
        self.epsilon, self.dtype = layer.epsilon, dtype

    def __call__(self, x):
        x = ops.cast(x, self.compute)
        centered = x - ops.mean(x, axis=-1, keepdims=True)
        variance = ops.mean(ops.square(centered), axis=-1, keepdims=True)
        scale = ops.rsqrt(variance + self.epsilon) * self.gamma
        return ops.cast(centered * scale + self.beta, self.dtype)


def _flat(dense, dtype, scale=1.0):
    """An `EinsumDense` projection `(d_model, heads, key_dim)` as a matrix
    `(d_model, heads * key_dim)` and its bias, both times `scale`."""
    kernel = ops.convert_to_tensor(dense.kernel)
    kernel = ops.reshape(kernel, (kernel.shape[0], -1))
    bias = ops.reshape(ops.convert_to_tensor(dense.bias), (-1,))
    return ops.cast(kernel * scale, dtype), ops.cast(bias * scale, dtype)


def _output(attention, dtype):
    dense = attention.output_dense
    kernel = ops.convert_to_tensor(dense.kernel)
    kernel = ops.reshape(kernel, (-1, kernel.shape[-1]))
    return ops.cast(kernel, dtype), _tensor(dense.bias, dtype)


def _dense(dense, dtype):
    return _tensor(dense.kernel, dtype), _tensor(dense.bias, dtype)


def _project(x, kernel_and_bias):
    kernel, bias = kernel_and_bias
    return ops.matmul(x, kernel) + bias


def _softmax(scores):
    if scores.shape[-1] == 1:  # one key: Keras warns about such a softmax
        return ops.ones_like(scores)
    # In float32 under half-precision policies, as the attention layer does.
    weights = ops.softmax(ops.cast(scores, "float32"), axis=-1)
    return ops.cast(weights, scores.dtype)


class _LayerWeights(_Weights):
    """One `DecoderLayer`'s weights, laid out for single-token steps."""

    def __init__(self, layer, dtype):
        attention = layer.self_attention
        self.heads, self.key_dim = attention.num_heads, attention.key_dim
        self.width = self.heads * self.key_dim
        scale = 1.0 / math.sqrt(self.key_dim)
        parts = [
            _flat(attention.query_dense, dtype, scale),
            _flat(attention.key_dense, dtype),
            _flat(attention.value_dense, dtype),
        ]
        self.qkv = (
            ops.concatenate([k for k, _ in parts], axis=1),
            ops.concatenate([b for _, b in parts], axis=0),
        )
        self.self_output = _output(attention, dtype)
        cross = layer.cross_attention
        self.query = _flat(cross.query_dense, dtype, scale)
        self.cross_output = _output(cross, dtype)
        self.inner = _dense(layer.feed_forward.inner_dense, dtype)
        self.outer = _dense(layer.feed_forward.output_dense, dtype)
        self.activation = layer.feed_forward.activation
        self.pre_norm = layer.pre_norm
        norms = (
            layer.self_attention_norm,
            layer.cross_attention_norm,
            layer.feed_forward_norm,
        )
        self.norms = [_Norm(norm, dtype) for norm in norms]

    def _block(self, index, x, sublayer):
        # Section 5.4 of the paper (post-LN), or pre-LN.
        norm = self.norms[index]
        if self.pre_norm:
            return x + sublayer(norm(x))
        return norm(x + sublayer(x))

    def __call__(self, x, t, cache, key_bias, memory, memory_bias, repeat, dynamic):
        heads, key_dim = self.heads, self.key_dim
        new_cache = []

        def self_attention(x):
            query, key, value = ops.split(_project(x, self.qkv), 3, axis=-1)
            query = ops.reshape(query, (-1, heads, 1, key_dim))
            if dynamic:
                # Appended along the length axis: contiguous blocks per head
                # (TensorFlow copies a concatenation along the last axis
                # element row by element row). The einsum's transpose of
                # the keys folds into the product.
                keys = ops.concatenate(
                    [cache[0], ops.reshape(key, (-1, heads, 1, key_dim))], axis=2
                )
                values = ops.concatenate(
                    [cache[1], ops.reshape(value, (-1, heads, 1, key_dim))], axis=2
                )
                scores = ops.einsum("rhqd,rhkd->rhqk", query, keys)
            else:
                keys, values = write_cache(
                    cache,
                    t,
                    ops.reshape(key, (-1, 1, heads, key_dim)),
                    ops.reshape(value, (-1, 1, heads, key_dim)),
                )
                # XLA reads the keys transposed in place.
                scores = ops.matmul(query, ops.swapaxes(keys, 2, 3))
                scores = scores + ops.cast(key_bias, scores.dtype)
            new_cache.extend((keys, values))
            attended = ops.matmul(_softmax(scores), values)
            return _project(ops.reshape(attended, (-1, self.width)), self.self_output)

        def cross_attention(x):
            # (batch, heads, key_dim, source_length), (batch, heads, length, key_dim)
            keys, values = memory
            query = _project(x, self.query)
            if repeat > 1:
                # The beams of a sentence are the query rows of one product.
                query = ops.reshape(query, (-1, repeat, heads, key_dim))
                query = ops.transpose(query, (0, 2, 1, 3))
            else:
                query = ops.reshape(query, (-1, heads, 1, key_dim))
            scores = ops.matmul(query, keys) + ops.cast(memory_bias, query.dtype)
            attended = ops.matmul(_softmax(scores), values)
            if repeat > 1:
                attended = ops.transpose(attended, (0, 2, 1, 3))
            attended = ops.reshape(attended, (-1, self.width))
            return _project(attended, self.cross_output)

        def feed_forward(x):
            return _project(self.activation(_project(x, self.inner)), self.outer)

        x = self._block(0, x, self_attention)
        x = self._block(1, x, cross_attention)
        x = self._block(2, x, feed_forward)
        return x, tuple(new_cache)


class DecoderStepWeights(_Weights):
    """Everything `fused_decoder_step` reads, derived from a model's weights.

    Computed in every `generate` call by default. An export computes it
    once and saves it as variables (`map`, `tensors`), so that a request
    does not re-derive it.

    Args:
        model: a `keras_tfm.models.Transformer`.
        max_length: the most decoding steps (rows of the position table).

    Example:
    >>> weights = DecoderStepWeights(model, 64)
    >>> generate(model, ids, jit_compile=False, step_weights=weights)

    Reference: "Attention Is All You Need", section 3.2.2 (the projections
    joined here are those of multi-head attention).
    """

    def __init__(self, model, max_length):
        decoder, embedding = model.decoder, model.target_embedding
        dtype = self.dtype = decoder.compute_dtype
        self.max_length = int(max_length)
        self.layers = [_LayerWeights(layer, dtype) for layer in decoder.decoder_layers]
        self.heads = self.layers[0].heads
        self.key_dim = self.layers[0].key_dim
        self.final_norm = (
            None if decoder.final_norm is None else _Norm(decoder.final_norm, dtype)
        )
        self.embeddings = embedding.embeddings  # the variable: never copied
        d_model = self.embeddings.shape[-1]
        self.embedding_scale = math.sqrt(d_model) if embedding.scale else 1.0
        positions = ops.arange(self.max_length, dtype="float32")
        self.positions = ops.cast(sinusoidal_positions(positions, d_model), dtype)
        # The keys and values of the encoder output, for every layer at once.
        memory = [
            _flat(dense, dtype)
            for layer in decoder.decoder_layers
            for dense in (
                layer.cross_attention.key_dense,
                layer.cross_attention.value_dense,
            )
        ]
        self.memory = (
            ops.concatenate([k for k, _ in memory], axis=1),
            ops.concatenate([b for _, b in memory], axis=0),
        )
        output = model.output_logits
        if output is None:  # tied to the target embedding
            # Transposed once here: a product with a transposed operand runs
            # many times slower on TensorFlow's CPU kernels at small batches.
            kernel, bias = ops.transpose(_tensor(self.embeddings, dtype)), 0.0
        else:
            kernel = _tensor(output.kernel, dtype)
            bias = 0.0 if output.bias is None else _tensor(output.bias, "float32")
        vocab = kernel.shape[-1]
        # The padding id is never generated: its logit is excluded here, in
        # the bias, rather than by a select over every step's logits.
        padding = ops.where(
            ops.equal(ops.arange(vocab, dtype="int32"), PADDING_ID),
            MASK_FILL_VALUE,
            0.0,
        )
        self.output = (kernel, ops.cast(bias + padding, "float32"))

    def cross_attention_cache(self, memory):
        """Per layer, the keys `(batch, heads, key_dim, length)` (transposed
        for the products of every step) and values `(batch, heads, length,
        key_dim)` of the encoder output, from one product for all layers."""
        batch, length = ops.shape(memory)[0], ops.shape(memory)[1]
        flat = ops.reshape(ops.cast(memory, self.dtype), (-1, memory.shape[-1]))
        parts = ops.split(_project(flat, self.memory), 2 * len(self.layers), axis=-1)
        shape = (batch, length, self.heads, self.key_dim)
        keys = [ops.transpose(ops.reshape(k, shape), (0, 2, 3, 1)) for k in parts[0::2]]
        values = [
            ops.transpose(ops.reshape(v, shape), (0, 2, 1, 3)) for v in parts[1::2]
        ]
        return tuple(zip(keys, values))

    def logits(self, x):
        kernel, bias = self.output
        return ops.cast(ops.matmul(x, kernel), "float32") + bias
