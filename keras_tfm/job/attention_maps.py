"""Cross-attention maps: where each output piece looks in the source.

`cross_attention` reads each decoder layer's encoder-decoder attention
weights for given source and target ids (teacher forcing). `sentence_maps`
translates a sentence and returns the weights with the subword pieces on
both sides; `draw_attention` draws them with matplotlib, one row per layer
and the heads side by side, as `keras-tfm attention` writes them, and
`draw_head` one head at the width of a TensorBoard image card, as the
training job logs them.
"""

import io

import numpy as np
from keras import ops

from keras_tfm.constants import PADDING_ID
from keras_tfm.decoding.cross_attention import cross_attention


def sentence_maps(model, src_tokenizer, tgt_tokenizer, sentence, **generate_kwargs):
    """Translates `sentence` and returns its cross-attention maps.

    Returns:
        `(weights (layers, heads, output_length, source_length), source
        pieces, output pieces, translation)`: the source pieces end with the
        end token; each output row is the step that produced that piece (the
        end token included when produced).
    """

    from keras_tfm.decoding.generation import generate

    source_limit = model.config.max_length
    ids = src_tokenizer.tokenize_source([sentence], source_limit).to_list()[0]
    if not ids:
        raise ValueError("the sentence has no pieces to attend to")
    source = np.array([ids], "int32")
    generate_kwargs.setdefault("method", "greedy")
    tokens, _ = generate(
        model,
        source,
        start_id=tgt_tokenizer.start_id,
        end_id=tgt_tokenizer.end_id,
        **generate_kwargs,
    )
    output = [int(t) for t in ops.convert_to_numpy(tokens)[0] if t != PADDING_ID]
    target = np.array([[tgt_tokenizer.start_id] + output[:-1]], "int32")
    weights = cross_attention(model, source, target)[:, 0]
    pieces = []
    for tokenizer, sequence in ((src_tokenizer, ids), (tgt_tokenizer, output)):
        vocabulary = tokenizer.pieces()
        pieces.append([vocabulary[int(i)] for i in sequence])
    translation = tgt_tokenizer.detokenize(np.array([output], "int32"))
    return weights, pieces[0], pieces[1], translation.numpy()[0].decode("utf-8")


def draw_attention(weights, source_pieces, target_pieces, title=None):
    """PNG bytes: one row of heatmaps per layer, heads side by side.

    Args:
        weights: `(layers, heads, target_length, source_length)`, or one
            layer's `(heads, target_length, source_length)`.
        source_pieces, target_pieces: the labels of the columns and rows.
        title: drawn above the picture.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    weights = np.asarray(weights, np.float32)
    if weights.ndim == 3:
        weights = weights[None]
    layers, heads, rows, columns = weights.shape
    if (rows, columns) != (len(target_pieces), len(source_pieces)):
        raise ValueError(
            f"weights are {rows} x {columns} but there are {len(target_pieces)} "
            f"target and {len(source_pieces)} source pieces"
        )
    cell = 0.28
    width = heads * (1.2 + cell * columns)
    height = layers * (1.2 + cell * rows) + (0.4 if title else 0)
    figure, axes = pyplot.subplots(
        layers, heads, figsize=(width, height), squeeze=False
    )
    for layer in range(layers):
        for head in range(heads):
            axis = axes[layer][head]
            axis.imshow(weights[layer, head], cmap="viridis", vmin=0.0, vmax=1.0)
            axis.set_xticks(range(columns), source_pieces, rotation=90, fontsize=7)
            axis.set_yticks(range(rows), target_pieces, fontsize=7)
            axis.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    pyplot.close(figure)
    return buffer.getvalue()


# TensorBoard shows an image in a card about 330 pixels wide (1400-pixel
# window); a wider picture is shrunk to fit, and its labels with it.
CARD_WIDTH_INCHES, CARD_DPI = 4.0, 100
_LABEL_POINTS = 9


def draw_head(weights, source_pieces, target_pieces, title=None):
    """PNG bytes of one head's map, 400 pixels wide for sources of up to 19
    pieces: shown in a TensorBoard image card at about 0.8 of its size, its
    9-point labels stay readable (about 10 pixels). Longer sources widen
    the picture rather than crowd their labels.

    Args:
        weights: `(target_length, source_length)`.
        source_pieces, target_pieces: the labels of the columns and rows.
        title: drawn above the map (wrapped to the width).
    """
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    weights = np.asarray(weights, np.float32)
    rows, columns = weights.shape
    if (rows, columns) != (len(target_pieces), len(source_pieces)):
        raise ValueError(
            f"weights are {rows} x {columns} but there are {len(target_pieces)} "
            f"target and {len(source_pieces)} source pieces"
        )
    # Room for the row labels and the rotated column labels, then square
    # cells as large as the width allows (never below one label's height).
    margin = 1.3
    cell = max(min(0.3, (CARD_WIDTH_INCHES - margin) / columns), 0.14)
    width = max(CARD_WIDTH_INCHES, margin + cell * columns)
    lines = textwrap.wrap(title, int(12 * width)) if title else []
    height = margin + cell * rows + 0.18 * len(lines)
    figure, axis = pyplot.subplots(figsize=(width, height))
    axis.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="equal")
    axis.set_xticks(range(columns), source_pieces, rotation=90)
    axis.set_yticks(range(rows), target_pieces)
    axis.tick_params(labelsize=_LABEL_POINTS)
    if lines:
        axis.set_title("\n".join(lines), fontsize=_LABEL_POINTS)
    figure.tight_layout(pad=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=CARD_DPI)
    pyplot.close(figure)
    return buffer.getvalue()
