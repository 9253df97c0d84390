"""The decoder's cross-attention weights for a given output (`keras.ops`)."""

import numpy as np
from keras import ops

from keras_tfm.constants import PADDING_ID


def cross_attention(model, source_ids, target_ids):
    """Each decoder layer's cross-attention weights, as NumPy.

    Args:
        model: a `keras_tfm.models.Transformer`.
        source_ids: int `(batch, source_length)`, 0 = padding.
        target_ids: int `(batch, target_length)`, the decoder input (start
            id first), 0 = padding.

    Returns:
        float32 `(layers, batch, heads, target_length, source_length)`; each
        row sums to 1 over the source positions that are not padding.
    """
    source_ids = ops.convert_to_tensor(source_ids, "int32")
    target_ids = ops.convert_to_tensor(target_ids, "int32")
    source_mask = ops.not_equal(source_ids, PADDING_ID)
    memory = model.encoder(
        model.source_embedding(source_ids), mask=source_mask, training=False
    )
    _, weights = model.decoder(
        model.target_embedding(target_ids),
        memory,
        decoder_sequence_mask=ops.not_equal(target_ids, PADDING_ID),
        encoder_sequence_mask=source_mask,
        return_attention_scores=True,
        training=False,
    )
    return np.stack([ops.convert_to_numpy(ops.cast(w, "float32")) for w in weights])
