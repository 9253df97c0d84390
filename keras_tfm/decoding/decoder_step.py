"""The decoder as one step of a search: the encoder runs once, then each step
feeds one token per row through the decoder (`keras.ops` only)."""

import keras
from keras import ops

from keras_tfm.constants import PADDING_ID


def decoder_step(model, source_ids, max_length, use_cache, repeat, dynamic=False):
    """Runs the encoder of `model` once; returns `(step, initial_state)`.

    `model` is a `keras_tfm.models.Transformer`, or any object with its
    parts: `source_embedding`, `target_embedding`, `encoder`, `decoder` and
    `project(hidden) -> logits`.

    `step(sequences, t, state) -> (logits, state)` gives float32 logits
    `(batch * repeat, vocab)` for position `t` of `sequences`, the int32
    decoder-input buffer `(batch * repeat, max_length + 1)` whose column 0
    is the start token and column t + 1 the token generated at step t.
    `state` is a tuple: `(self_attention_cache,)` with `use_cache`, else
    empty. Everything that does not depend on the step (encoder output,
    cross-attention keys and values, source mask) is computed here, once,
    already repeated for the beams. With `dynamic`, the self-attention
    caches grow step by step, and the cross-attention caches and source mask
    are part of `state` too, so that a search can drop rows from all of it.
    """
    target_embedding, decoder = model.target_embedding, model.decoder
    project = model.project
    source_mask = ops.not_equal(source_ids, PADDING_ID)
    memory = model.encoder(
        model.source_embedding(source_ids), mask=source_mask, training=False
    )
    if repeat > 1:
        source_mask = ops.repeat(source_mask, repeat, axis=0)

    if use_cache:
        cross_cache = decoder.compute_cross_attention_cache(memory)
        if repeat > 1:
            cross_cache = keras.tree.map_structure(
                lambda cache: ops.repeat(cache, repeat, axis=0), cross_cache
            )
        batch = ops.shape(source_ids)[0] * repeat
        length = max_length
        if dynamic:
            # A zero that shape inference cannot see through: the caches
            # start empty with a length the loop may change.
            length = ops.cast(ops.sum(ops.zeros_like(source_ids[:1, :1])), "int32")
        state = (decoder.initial_self_attention_cache(batch, length),)
        if dynamic:
            state += (cross_cache, source_mask)

        def step(sequences, t, state):
            tokens = ops.expand_dims(ops.take(sequences, t, axis=1), 1)
            cross, mask = state[1:] if dynamic else (cross_cache, source_mask)
            hidden, cache, _ = decoder(
                target_embedding(tokens),
                None,
                encoder_sequence_mask=mask,
                self_attention_cache=state[0],
                self_attention_cache_update_index=t,
                cross_attention_cache=cross,
                grow_self_attention_cache=dynamic,
                training=False,
            )
            return project(hidden)[:, 0], (cache,) + tuple(state[1:])

        return step, state

    if repeat > 1:
        memory = ops.repeat(memory, repeat, axis=0)

    def step(sequences, t, state):
        prefix = sequences[:, :max_length]
        hidden = decoder(
            target_embedding(prefix),
            memory,
            decoder_sequence_mask=ops.not_equal(prefix, PADDING_ID),
            encoder_sequence_mask=source_mask,
            training=False,
        )
        # Only position t is needed: project that one row.
        current = ops.expand_dims(ops.take(hidden, t, axis=1), 1)
        return project(current)[:, 0], state

    return step, ()
