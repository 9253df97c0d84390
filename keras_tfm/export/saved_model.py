"""Export a trained Transformer as a SavedModel for TensorFlow Serving.

The SavedModel is a plain `tf.Module` saved with `tf.saved_model.save`: the
server needs neither Keras nor Python, only TensorFlow core ops and the
TensorFlow Text SentencePiece ops (which the stock `tensorflow_model_server`
links in). Its graph holds the whole pipeline: text in, text out.

Layout (TF Serving's model base path is `base_dir/NAME`)::

    base_dir/NAME/1/saved_model.pb
    base_dir/NAME/1/variables/...
    base_dir/NAME/1/assets.extra/keras_tfm_export.json   (decoding options)
    base_dir/NAME/1/assets.extra/tf_serving_warmup_requests  (replayed at load)
    base_dir/NAME/2/...

Signatures (all batch-major; the batch may be empty):

* `serving_default`:
    inputs  `sentences`    tf.string `(batch,)`
    outputs `translations` tf.string `(batch,)`, `scores` float32 `(batch,)`

  Each sentence is made valid UTF-8 (`tf.strings.unicode_transcode` with
  `errors="replace"`: every invalid byte sequence becomes U+FFFD, which the
  SentencePiece model maps to its unknown id unless it knows the character),
  tokenized with the source SentencePiece model, truncated to
  `source_max_length - 1` subword ids, followed by the source end id, and
  0-padded to the longest row. The target is decoded with
  `keras_tfm.decoding.generation.generate` (key/value-cached greedy or beam search)
  and detokenized (everything after the first end id is dropped). `scores`
  are those of `generate`: the total log-probability for greedy search, the
  length-normalised score for beam search.

* `translate_ids`:
    inputs  `source_ids` int32 `(batch, length)`, 0-padded, each row ending
            with the source end id (as `Tokenizer.tokenize` + end id gives)
    outputs `token_ids` int32 `(batch, max_length)`, the target ids without
            the start id, end id included when produced, 0-padded after it;
            `scores` float32 `(batch,)`.

  Rows longer than `source_max_length` are cut to `source_max_length - 1`
  ids plus the source end id, as the text path does.

The decoding options (`method`, `beam_size`, `length_penalty`, `max_length`,
`source_max_length`) are fixed at export time: they shape the graph (beam
width, loop bound) and are written to `assets.extra/keras_tfm_export.json`.
Export another version to change them.

Versions are integer folder names. A version is written into a hidden
temporary folder (`.tmp-export-*`, which TF Serving ignores: its file-system
source only considers children whose names parse as integers) and renamed
into place atomically, so the server never sees a half-written version; an
existing version is never overwritten (`keras_tfm.export.model_versions`).

This module takes a model, its tokenizers and decoding options; exporting a
training run's directory is `keras_tfm.job.finished_run.export_run`.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

from keras_tfm.decoding.decode import decoding_options
from keras_tfm.errors import ExportError, FieldError, VersionExistsError, check_int
from keras_tfm.export.model_versions import (
    check_version_free,
    find_saved_model,
    next_version,
    rename_no_replace,
)
from keras_tfm.export.options import DEFAULT_BASE_DIR, EXPORT_DTYPES
from keras_tfm.export.serving_graph import (
    IDS_SIGNATURE,
    SERVING_SIGNATURE,
    build_module,
)
from keras_tfm.export.warmup import (
    WARMUP_FILE,
    warmup_shapes,
    write_warmup_requests,
)
from keras_tfm.models.transformer import with_dtype_policy

__all__ = [
    "ExportError",
    "VersionExistsError",
    "export_saved_model",
    "find_saved_model",
    "next_version",
    "saved_model_op_types",
]

METADATA_FILE = "keras_tfm_export.json"
TEMP_PREFIX = ".tmp-export-"
# Op types that must never reach a served graph: Python callbacks cannot run
# in tensorflow_model_server, and XLA ops only run through on-demand XLA
# compilation (not available for every device of the stock server).
_FORBIDDEN_OPS = ("PyFunc", "PyFuncStateless", "EagerPyFunc")


def saved_model_op_types(path):
    """Sorted op types of every graph and library function of a SavedModel."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    types, functions = set(), set()
    for meta_graph in proto.meta_graphs:
        graph = meta_graph.graph_def
        types.update(node.op for node in graph.node)
        for function in graph.library.function:
            functions.add(function.signature.name)
            types.update(node.op for node in function.node_def)
    # A node may call a library function by its name: that is no op type.
    return sorted(types - functions)


def _check_portable(path):
    bad = [
        op
        for op in saved_model_op_types(path)
        if op in _FORBIDDEN_OPS or op.startswith("Xla")
    ]
    if bad:
        raise ExportError(
            f"the exported graph uses ops that tensorflow_model_server cannot run "
            f"without Python or XLA: {', '.join(bad)}"
        )


def _export_options(model, decoding, source):
    """The decoding options of an export, checked against the model."""
    try:
        decoding = decoding.require_deterministic().for_model(model.config.max_length)
        encoder_limit = model.config.max_length
        source = encoder_limit if source is None else source
        check_int("export", "source_max_length", source, 1)
        if source > encoder_limit:
            raise FieldError(
                "export",
                "source_max_length",
                f"is {source}, more than the model's max_length {encoder_limit}",
            )
    except FieldError as error:
        raise ExportError(f"{error.field} {error.problem}") from None
    options = decoding.to_dict()
    if options["method"] == "greedy":
        options["beam_size"] = 1
    return dict(options, source_max_length=source, decoding=decoding)


def check_name(name):
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or (name.startswith(".") or "/" in name or os.sep in name or "\0" in name)
    ):
        raise ExportError(
            f"model name must be a plain folder name (no '/', not starting "
            f"with '.'), got {name!r}"
        )


# -------------------------------------------------------------------- API
def export_saved_model(
    model,
    src_tokenizer,
    tgt_tokenizer,
    base_dir=DEFAULT_BASE_DIR,
    name=None,
    version=None,
    *,
    options=None,
    method=None,
    beam_size=None,
    length_penalty=None,
    max_length=None,
    early_stopping=None,
    source_max_length=None,
    dtype="float32",
    jit_compile=False,
):
    """Writes `base_dir/NAME/VERSION/` for TF Serving and returns its path.

    Args:
        model: a `keras_tfm.models.Transformer`.
        src_tokenizer, tgt_tokenizer: `keras_tfm.text.tokenizer.Tokenizer`s.
        base_dir: the folder holding one folder per model name.
        name: the model name (TF Serving's model base path is
            `base_dir/NAME`). Required.
        version: an integer >= 1; None: 1 + the highest existing version.
        options: `keras_tfm.DecodingOptions` of the decoding in the graph
            (default: beam search, 4 beams, length penalty 0.6, the model's
            `max_length`); "beam" or "greedy".
        method, beam_size, length_penalty, max_length, early_stopping:
            override the fields of `options` of the same names (None: keep
            them).
        dtype: the exported graph's weights and arithmetic: "float32" (the
            reference, whatever precision the model was trained in) or
            "bfloat16" (half the weight memory and faster matrix products
            on CPUs with AMX or AVX512-BF16; slightly different numbers).
        jit_compile: compile the decoding with XLA inside the SavedModel.
            TF Serving then needs `--xla_cpu_compilation_enabled` (its
            experimental flag; without it the first request fails), and
            each new padded input shape compiles once (seconds).
        source_max_length: longest source in tokens, end token included
            (default and maximum: the model's `max_length`); longer sources
            are cut to `source_max_length - 1` tokens plus the end token.

    Returns:
        The `pathlib.Path` of the new version folder.

    Raises:
        VersionExistsError: `version` already exists (nothing is written).
        ExportError: on a bad argument or a graph that uses Python or XLA
            ops.
    """
    import keras
    import tensorflow as tf

    if keras.config.backend() != "tensorflow":
        raise ExportError(
            "export_saved_model needs the TensorFlow backend (KERAS_BACKEND="
            f"tensorflow), got {keras.config.backend()!r}"
        )
    check_name(name)
    try:
        decoding = decoding_options(
            options,
            method=method,
            beam_size=beam_size,
            length_penalty=length_penalty,
            max_length=max_length,
            early_stopping=early_stopping,
        )
    except ValueError as error:
        raise ExportError(str(error).removeprefix("generate: ")) from None
    options = _export_options(model, decoding, source_max_length)
    if dtype not in EXPORT_DTYPES:
        raise ExportError(f"dtype must be one of {EXPORT_DTYPES}, got {dtype!r}")
    if model.encoder.dtype_policy.name != dtype:
        # Mixed precision computes in bfloat16 from float32 weights, casting
        # every weight at every decoding step: export one dtype throughout.
        model = with_dtype_policy(model, dtype)
    model_dir = Path(base_dir) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    if version is None:
        version = next_version(model_dir)
    elif isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportError(f"version must be an integer >= 1, got {version!r}")
    check_version_free(model_dir, version)
    target = model_dir / str(version)

    temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=model_dir))
    try:
        module, signatures = build_module(
            model, src_tokenizer, tgt_tokenizer, dict(options, jit_compile=jit_compile)
        )
        tf.saved_model.save(module, str(temp), signatures=signatures)
        _check_portable(temp)
        extra = temp / "assets.extra"
        extra.mkdir(exist_ok=True)
        metadata = dict(
            {key: value for key, value in options.items() if key != "decoding"},
            dtype=dtype,
            jit_compile=jit_compile,
            signatures={
                SERVING_SIGNATURE: {
                    "inputs": {"sentences": "string (batch,)"},
                    "outputs": {
                        "translations": "string (batch,)",
                        "scores": "float32 (batch,)",
                    },
                },
                IDS_SIGNATURE: {
                    "inputs": {"source_ids": "int32 (batch, length)"},
                    "outputs": {
                        "token_ids": f"int32 (batch, {options['max_length']})",
                        "scores": "float32 (batch,)",
                    },
                },
            },
            src_vocab_size=src_tokenizer.vocab_size,
            tgt_vocab_size=tgt_tokenizer.vocab_size,
            src_end_id=src_tokenizer.end_id,
            tgt_start_id=tgt_tokenizer.start_id,
            tgt_end_id=tgt_tokenizer.end_id,
            tensorflow_version=tf.__version__,
        )
        (extra / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        write_warmup_requests(
            extra / WARMUP_FILE,
            src_tokenizer,
            warmup_shapes(options["source_max_length"], jit_compile),
            SERVING_SIGNATURE,
        )
        # mkdtemp makes the folder private; a server running as another user
        # must be able to read it.
        for folder, _, _ in os.walk(temp):
            os.chmod(folder, 0o755)
        try:
            rename_no_replace(temp, target)
        except FileExistsError:
            raise VersionExistsError(
                f"model version {version} already exists at {target}; it is "
                "left untouched"
            ) from None
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return target
