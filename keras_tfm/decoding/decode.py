"""One decoding run, traceable by any compiler: checks the settings, builds
the decoder step and hands it to the search (`keras.ops` only)."""

from keras import ops

from keras_tfm.constants import END_ID, PADDING_ID, START_ID
from keras_tfm.decoding.decoder_step import decoder_step
from keras_tfm.decoding.options import DecodingOptions
from keras_tfm.decoding.search import SearchInputs
from keras_tfm.decoding.searches import SEARCHES
from keras_tfm.decoding.token_buffers import append_end, forbid_before
from keras_tfm.errors import FieldError, check_int

# The fields of DecodingOptions that `generate` also takes one by one.
OPTION_FIELDS = (
    "method",
    "beam_size",
    "length_penalty",
    "max_length",
    "early_stopping",
)
# What decoding reads of a model (`keras_tfm.models.Transformer` has them).
_PARTS = ("config", "source_embedding", "target_embedding", "encoder", "decoder")
# `generate`'s other arguments that shape a decoding, with their defaults.
SETTING_DEFAULTS = dict(
    start_id=START_ID,
    end_id=END_ID,
    min_length=0,
    n_best=None,
    append_source_end=False,
    temperature=1.0,
    top_k=None,
    top_p=None,
    seed=None,
    use_cache=True,
)


def decoding_options(options=None, **fields):
    """`options` (default `DecodingOptions()`) with the given fields that
    are not None replaced; errors name `generate`'s argument."""
    if options is None:
        options = DecodingOptions()
    elif not isinstance(options, DecodingOptions):
        raise TypeError(f"generate: options must be a DecodingOptions, got {options!r}")
    changes = {name: value for name, value in fields.items() if value is not None}
    try:
        return options.replace(**changes) if changes else options
    except FieldError as error:
        raise ValueError(f"generate: {error.field} {error.problem}") from None


def resolve(model, settings):
    """The settings checked against the model: `(options, top_k, vocab)`."""
    if not all(hasattr(model, part) for part in _PARTS):
        raise TypeError(
            f"generate: {type(model).__name__} {getattr(model, 'name', '')!r} is "
            "not a keras_tfm Transformer (build one with keras_tfm.Transformer; "
            "keras_tfm.models.legacy.upgrade_model converts a model saved by "
            "keras_tfm 0.1.0)"
        )
    vocab_size = model.config.tgt_vocab_size
    start_id, end_id = settings["start_id"], settings["end_id"]
    temperature, top_k = settings["temperature"], settings["top_k"]
    top_p = settings["top_p"]
    try:
        options = settings["options"].for_model(model.config.max_length)
        for name, value in (("start_id", start_id), ("end_id", end_id)):
            check_int("generate", name, value, 1)
            if value >= vocab_size:
                raise FieldError(
                    "generate",
                    name,
                    f"={value} is outside the target vocabulary of size {vocab_size}",
                )
        if options.method == "sample":
            if not temperature > 0:
                raise FieldError(
                    "generate", "temperature", f"must be > 0, got {temperature}"
                )
            if top_k is not None:
                top_k = min(check_int("generate", "top_k", top_k, 1), vocab_size)
            if top_p is not None and not 0 < top_p <= 1:
                raise FieldError("generate", "top_p", f"must be in (0, 1], got {top_p}")
        min_length = check_int("generate", "min_length", settings["min_length"], 0)
        if min_length >= options.max_length:
            raise FieldError(
                "generate",
                "min_length",
                f"is {min_length}: no room is left for the end token within "
                f"max_length {options.max_length}",
            )
        n_best = settings["n_best"]
        if n_best is not None:
            check_int("generate", "n_best", n_best, 1)
            hypotheses = make_search(options, settings, top_k).hypotheses
            if n_best > hypotheses:
                raise FieldError(
                    "generate",
                    "n_best",
                    f"is {n_best}, more than the {hypotheses} hypotheses "
                    f"{options.method} search keeps (beam_size)",
                )
    except FieldError as error:
        raise ValueError(f"generate: {error.field} {error.problem}") from None
    return options, top_k, vocab_size


def make_search(options, settings, top_k):
    return SEARCHES[options.method].from_options(
        options,
        temperature=settings["temperature"],
        top_k=top_k,
        top_p=settings["top_p"],
        seed=settings["seed"],
    )


def decode(
    model,
    source_ids,
    *,
    options,
    start_id,
    end_id,
    min_length,
    n_best,
    append_source_end,
    temperature,
    top_k,
    top_p,
    seed,
    use_cache,
    dynamic_shapes=False,
    step_weights=None,
):
    """One decoding of `source_ids`: `generate` without the compiled-function
    cache (static shapes unless `dynamic_shapes`: traceable by any compiler)."""
    settings = dict(
        options=options,
        start_id=start_id,
        end_id=end_id,
        min_length=min_length,
        n_best=n_best,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
    )
    options, top_k, vocab_size = resolve(model, settings)
    search = make_search(options, settings, top_k)
    max_length = options.max_length

    source_ids = ops.cast(source_ids, "int32")
    if append_source_end:
        source_ids = append_end(source_ids, END_ID, model.config.max_length)
    batch_size = ops.shape(source_ids)[0]
    empty = ops.logical_not(ops.any(ops.not_equal(source_ids, PADDING_ID), axis=1))
    step, state = decoder_step(
        model,
        source_ids,
        max_length,
        use_cache,
        search.rows_per_sentence,
        dynamic_shapes,
        step_weights,
    )
    restrict = None
    if min_length:

        def restrict(logits, t):
            return forbid_before(logits, end_id, t, min_length)

    tokens, scores = search(
        SearchInputs(
            step=step,
            state=state,
            batch=batch_size,
            max_length=max_length,
            start_id=start_id,
            end_id=end_id,
            vocab=vocab_size,
            empty=empty,
            restrict=restrict,
            compact=dynamic_shapes and use_cache,
            n_best=n_best or 1,
        )
    )
    if n_best is None:
        return tokens[:, 0], scores[:, 0]
    return tokens, scores
