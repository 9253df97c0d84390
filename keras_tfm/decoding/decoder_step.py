"""The decoder as one step of a search: the encoder runs once, then each step
feeds one token per row through the decoder (`keras.ops` only)."""

from keras import ops

from keras_tfm.constants import PADDING_ID
from keras_tfm.decoding.fused_step import fused_decoder_step
from keras_tfm.decoding.token_buffers import exclude_padding


def decoder_step(
    model, source_ids, max_length, use_cache, repeat, dynamic=False, weights=None
):
    """Runs the encoder of `model` once; returns `(step, initial_state)`.

    `model` is a `keras_tfm.models.Transformer`, or any object with its
    parts: `source_embedding`, `target_embedding`, `encoder`, `decoder` and
    `project(hidden) -> logits`.

    `step(sequences, t, state) -> (logits, state)` gives float32 logits
    `(batch * repeat, vocab)` for position `t` of `sequences`, the int32
    decoder-input buffer `(batch * repeat, max_length + 1)` whose column 0
    is the start token and column t + 1 the token generated at step t.
    The logit of the padding id is `MASK_FILL_VALUE`: searches never
    generate padding.

    With `use_cache`, this is `fused_decoder_step`: its state holds the
    self-attention caches (one entry per row, reordered with the beams) and
    the encoder's keys, values and padding bias (one entry per sentence),
    and `dynamic` caches grow step by step. Without, every step runs the
    decoder layers over the whole prefix (the reference the cached step is
    tested against) and the state is empty.
    """
    if use_cache:
        return fused_decoder_step(
            model, source_ids, max_length, repeat, dynamic, weights
        )

    target_embedding, decoder = model.target_embedding, model.decoder
    project = model.project
    source_mask = ops.not_equal(source_ids, PADDING_ID)
    memory = model.encoder(
        model.source_embedding(source_ids), mask=source_mask, training=False
    )
    if repeat > 1:
        source_mask = ops.repeat(source_mask, repeat, axis=0)
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
        return exclude_padding(project(current)[:, 0]), state

    return step, ()
