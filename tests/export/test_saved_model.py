"""Tests for the SavedModel export: the TF Serving SavedModel, versions, the CLI.

One tiny model is trained for a few seconds on the numbers task so that its
translations are not degenerate. The SavedModel is checked the way the C++
model server uses it: `tests/support/scripts/serving_client.py` runs in a
separate process that imports only tensorflow and tensorflow_text, loads the
`serve` MetaGraph into a TF1 session and runs the SignatureDefs by tensor name.
"""

import base64
import json
import math
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from support.numbers import NUMBERS_MAX_LENGTH
from support.paths import SERVING_CLIENT
from support.processes import child_env
from support.profiles import read_trace, step_markers

from keras_tfm import DecodingOptions
from keras_tfm.data.numbers_task import number_pairs
from keras_tfm.decoding.translator import make_translator
from keras_tfm.errors import ExportError, VersionExistsError
from keras_tfm.export.saved_model import (
    export_saved_model,
    find_saved_model,
    saved_model_op_types,
)

pytestmark = [
    pytest.mark.skipif(
        keras.config.backend() != "tensorflow",
        reason="SavedModel export needs TensorFlow",
    ),
]

CLIENT = SERVING_CLIENT
MAX_LENGTH = NUMBERS_MAX_LENGTH
BEAM = {
    "method": "beam",
    "beam_size": 4,
    "length_penalty": 0.6,
    "max_length": MAX_LENGTH,
}
TEXT_OPS = {"SentencepieceOp", "SentencepieceTokenizeOp", "SentencepieceDetokenizeOp"}
TEST_NUMBERS = [54, 3, 13, 123, 403, 873, 999, 1000, 2024]
LONG = ("vierundfünfzig " * 700)[:10_000]
INVALID_UTF8 = [
    b"vier\xffund\xfefunfzig",
    b"f\xc3\xbcnf\xc3",
    b"\x80\x81\x82",
    b"zw\xe4lf",
]


def sources(numbers):
    return [german for german, _ in number_pairs(numbers)]


def keras_tfm_command():
    script = Path(sys.executable).with_name("keras-tfm")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "keras_tfm.cli"]


def run_command(args, **kwargs):
    return subprocess.run(
        args, capture_output=True, env=child_env(), timeout=300, **kwargs
    )


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def trained(trained_numbers):
    """A tiny model, its tokenizers and a run directory like `keras-tfm train`'s
    (the session's, shared with the CTranslate2 tests)."""
    return trained_numbers


@pytest.fixture(scope="module")
def translator(trained):
    """The in-process path: tokenizer + cached `generate` + detokenize."""
    return make_translator(
        trained.model, trained.src, trained.tgt, DecodingOptions(**BEAM), batch_size=256
    )


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("saved_models")


@pytest.fixture(scope="module")
def exported(trained, base_dir):
    return export_saved_model(
        trained.model, trained.src, trained.tgt, base_dir, name="numbers", **BEAM
    )


def mixed_batch():
    """256 sentences of mixed lengths, some empty, one very long."""
    rng = np.random.default_rng(0)
    numbers = [int(n) for n in rng.integers(0, 10_000, 256)]
    batch = sources(numbers)
    for index in range(0, 256, 37):
        batch[index] = ""
    batch[100] = LONG
    batch[200] = " und ".join(sources([7, 77, 777]))
    return batch


def as_request_item(sentence):
    if isinstance(sentence, bytes):
        return {"base64": base64.b64encode(sentence).decode("ascii")}
    return sentence


@pytest.fixture(scope="module")
def served(exported, trained, tmp_path_factory):
    """Runs the serving client (tests/support/scripts) on the export;
    returns its response."""
    folder = tmp_path_factory.mktemp("client")
    reference_ids = trained.src.tokenize(sources(TEST_NUMBERS))
    end = tf.fill([reference_ids.nrows(), 1], trained.src.end_id)
    reference_ids = tf.concat([reference_ids, tf.RaggedTensor.from_tensor(end)], 1)
    request = {
        "batches": {
            "reference": sources(TEST_NUMBERS),
            "empty": [""],
            "whitespace": ["   ", " \t \n "],
            "long": [LONG, "vierundfünfzig"],
            "invalid_utf8": [as_request_item(s) for s in INVALID_UTF8],
            "replaced_utf8": [s.decode("utf-8", "replace") for s in INVALID_UTF8],
            "empty_batch": [],
            "mixed_256": mixed_batch(),
        },
        "id_batches": {
            "reference": reference_ids.to_list(),
            "too_long": [[5] * (3 * MAX_LENGTH) + [trained.src.end_id]],
            "empty_batch": [],
        },
        "repeat": {"batch": "mixed_256", "warmup": 3, "count": 30},
        "replay_warmup": True,
    }
    request_path = folder / "request.json"
    response_path = folder / "response.json"
    request_path.write_text(json.dumps(request, ensure_ascii=False), encoding="utf-8")
    result = run_command(
        [
            sys.executable,
            str(CLIENT),
            str(exported),
            str(request_path),
            str(response_path),
        ]
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return json.loads(response_path.read_text(encoding="utf-8"))


def texts(result):
    return [item["text"] for item in result["translations"]]


def assert_well_formed(result, batch_size):
    assert result["shapes"] == {"translations": [batch_size], "scores": [batch_size]}
    assert result["dtypes"] == {"translations": "object", "scores": "float32"}
    assert all(item["utf8"] for item in result["translations"])
    assert all(math.isfinite(score) and score <= 0 for score in result["scores"])


# --------------------------------------------------------------- the server
def test_client_imports_only_tensorflow_and_text(served):
    # TensorFlow 2.21's own `import tensorflow` imports keras (tf.keras);
    # nothing else of the kind may be imported by the client.
    ours = set(served["imported"]) - set(served["imported_by_tensorflow"])
    assert ours == {"tensorflow_text"}
    assert "keras_tfm" not in served["imported"]


def test_signatures(served):
    signatures = served["signatures"]
    serving = signatures["serving_default"]
    assert serving["method_name"] == "tensorflow/serving/predict"
    assert {k: (v["dtype"], v["shape"]) for k, v in serving["inputs"].items()} == {
        "sentences": ("string", [-1])
    }
    assert {k: (v["dtype"], v["shape"]) for k, v in serving["outputs"].items()} == {
        "translations": ("string", [-1]),
        "scores": ("float32", [-1]),
    }
    ids = signatures["translate_ids"]
    assert {k: (v["dtype"], v["shape"]) for k, v in ids["inputs"].items()} == {
        "source_ids": ("int32", [-1, -1])
    }
    assert {k: (v["dtype"], v["shape"]) for k, v in ids["outputs"].items()} == {
        "token_ids": ("int32", [-1, MAX_LENGTH]),
        "scores": ("float32", [-1]),
    }


def test_served_translations_equal_in_process(served, translator):
    result = served["results"]["reference"]
    assert_well_formed(result, len(TEST_NUMBERS))
    expected = translator(sources(TEST_NUMBERS))
    assert texts(result) == expected
    # Not degenerate: the model learned something.
    assert len(set(expected)) > len(expected) // 2


def test_translate_ids_signature(served, trained):
    tokens = np.array(served["id_results"]["reference"]["token_ids"], np.int32)
    assert tokens.shape == (len(TEST_NUMBERS), MAX_LENGTH)
    text = [t.decode() for t in trained.tgt.detokenize(tokens).numpy()]
    assert text == texts(served["results"]["reference"])
    np.testing.assert_allclose(
        served["id_results"]["reference"]["scores"],
        served["results"]["reference"]["scores"],
        rtol=1e-5,
        atol=1e-5,
    )
    # Longer than the model takes: cut, still well-formed.
    too_long = np.array(served["id_results"]["too_long"]["token_ids"])
    assert too_long.shape == (1, MAX_LENGTH)
    assert served["id_results"]["empty_batch"]["token_ids"] == []
    assert served["id_results"]["empty_batch"]["scores"] == []


def test_ops_are_core_or_tensorflow_text(served, exported):
    ops = served["ops"]
    assert ops["unregistered"] == []
    assert set(ops["tensorflow_text"]) == TEXT_OPS
    forbidden = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
    assert not forbidden & set(ops["core"])
    assert not [op for op in ops["core"] if op.startswith("Xla")]
    assert sorted(ops["core"] + ops["tensorflow_text"]) == saved_model_op_types(
        exported
    )


# --------------------------------------------------------------- edge cases
def test_empty_and_whitespace_sentences(served, translator):
    # No pieces, no end token appended: nothing to translate, "" with score 0.
    for name, size in (("empty", 1), ("whitespace", 2)):
        assert_well_formed(served["results"][name], size)
        assert texts(served["results"][name]) == [""] * size
        np.testing.assert_array_equal(served["results"][name]["scores"], 0.0)
    assert translator(["", " \t "]) == ["", ""]


def test_long_sentence_is_truncated(served, trained, translator):
    result = served["results"]["long"]
    assert_well_formed(result, 2)
    assert len(LONG) == 10_000
    # Truncated to MAX_LENGTH - 1 subword ids plus the end token, as in
    # process; so the same as any sentence with the same first ids.
    limit = MAX_LENGTH - 1
    ids = trained.src.tokenize([LONG]).to_list()[0]
    assert len(ids) > limit
    prefix = trained.src.detokenize(tf.constant([ids[:limit]])).numpy()[0].decode()
    assert texts(result)[0] == translator([LONG])[0] == translator([prefix])[0]


def test_invalid_utf8_is_replaced(served):
    result = served["results"]["invalid_utf8"]
    assert_well_formed(result, len(INVALID_UTF8))
    # Same as Python's errors="replace" decoding (U+FFFD per bad sequence).
    assert texts(result) == texts(served["results"]["replaced_utf8"])


def test_empty_batch(served):
    result = served["results"]["empty_batch"]
    assert result["translations"] == [] and result["scores"] == []
    assert result["shapes"] == {"translations": [0], "scores": [0]}


def test_batch_of_256_mixed_lengths(served, translator):
    result = served["results"]["mixed_256"]
    assert_well_formed(result, 256)
    assert texts(result) == translator(mixed_batch())


def test_repeated_calls_do_not_grow_memory(served):
    rss = served["rss"]
    growth = rss["after"] - rss["before"]
    # 30 batches of 256 sentences: a leak of even 10 KB per sentence would
    # show up as ~75 MB.
    assert growth < 64 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"


# ----------------------------------------------------------------- tooling
def test_warmup_requests_replay_as_tf_serving_does(served, trained):
    """Every export carries warmup requests for `serving_default` that the
    server can run: a batch of 1 and one of 8, of 7 and 15 source pieces
    (the end id makes 8 and 16)."""
    warmup = served["warmup"]
    assert [item["signature_name"] for item in warmup] == ["serving_default"] * 2
    assert [len(item["sentences"]) for item in warmup] == [1, 8]
    pieces = trained.src.tokenize([item["sentences"][0] for item in warmup])
    assert pieces.row_lengths().numpy().tolist() == [7, 15]
    for item in warmup:
        assert len(item["translations"]) == len(item["sentences"])
        assert all(t["utf8"] and t["text"] for t in item["translations"])


def test_saved_model_cli_lists_both_signatures(exported):
    cli = Path(sys.executable).with_name("saved_model_cli")
    command = (
        [str(cli)]
        if cli.exists()
        else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    )
    result = run_command(command + ["show", "--all", "--dir", str(exported)])
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    output = result.stdout.decode()
    assert "signature_def['serving_default']" in output
    assert "signature_def['translate_ids']" in output
    for tensor in ("sentences", "translations", "scores", "source_ids", "token_ids"):
        assert f"['{tensor}']" in output


def test_metadata_records_decoding_options(exported):
    metadata = json.loads(
        (exported / "assets.extra" / "keras_tfm_export.json").read_text()
    )
    assert {k: metadata[k] for k in BEAM} == BEAM
    assert metadata["source_max_length"] == MAX_LENGTH


# ---------------------------------------------------------------- versions
def no_temp_folders(model_dir):
    return [p.name for p in model_dir.iterdir() if not p.name.isdigit()] == []


def tree_snapshot(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_versions_are_atomic_and_never_overwritten(
    trained, base_dir, exported, monkeypatch
):
    model_dir = base_dir / "numbers"
    assert exported == model_dir / "1"
    before = tree_snapshot(exported)

    with pytest.raises(VersionExistsError, match=str(exported)):
        export_saved_model(
            trained.model, trained.src, trained.tgt, base_dir, name="numbers", version=1
        )
    assert tree_snapshot(exported) == before

    # A failure half-way leaves neither a version nor a temporary folder.
    def broken_save(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(
            trained.model, trained.src, trained.tgt, base_dir, name="numbers"
        )
    monkeypatch.undo()
    assert sorted(p.name for p in model_dir.iterdir()) == ["1"]

    second = export_saved_model(
        trained.model,
        trained.src,
        trained.tgt,
        base_dir,
        name="numbers",
        method="greedy",
        max_length=12,
    )
    assert second == model_dir / "2"
    assert (second / "saved_model.pb").is_file()
    assert no_temp_folders(model_dir)
    assert tree_snapshot(exported) == before
    assert find_saved_model(model_dir) == second

    with pytest.raises(ExportError, match="name"):
        export_saved_model(
            trained.model, trained.src, trained.tgt, base_dir, name="../x"
        )
    with pytest.raises(ExportError, match="max_length"):
        export_saved_model(
            trained.model,
            trained.src,
            trained.tgt,
            base_dir,
            name="numbers",
            max_length=MAX_LENGTH + 1,
        )
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "2"]


# --------------------------------------------------------------------- CLI
def test_cli_export_and_translate(trained, tmp_path):
    base = tmp_path / "models"
    (base / "numbers" / "7").mkdir(parents=True)  # an existing (foreign) version
    result = run_command(
        keras_tfm_command()
        + [
            "export",
            str(trained.run_dir),
            "--name",
            "numbers",
            "--base-dir",
            str(base),
            "--method",
            "greedy",
        ]
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    version_dir = base / "numbers" / "8"
    assert result.stdout.decode().strip() == str(version_dir)
    assert no_temp_folders(base / "numbers")
    metadata = json.loads(
        (version_dir / "assets.extra" / "keras_tfm_export.json").read_text()
    )
    assert metadata["method"] == "greedy" and metadata["max_length"] == MAX_LENGTH

    greedy = make_translator(
        trained.model,
        trained.src,
        trained.tgt,
        DecodingOptions(method="greedy", max_length=MAX_LENGTH),
    )
    sentences = sources([54, 123, 2024])
    expected = greedy(sentences)

    result = run_command(
        keras_tfm_command() + ["translate", "--model", str(version_dir)] + sentences
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert result.stdout.decode("utf-8").splitlines() == expected

    # --profile: the same translations, and a trace for the Profile dashboard
    # whose steps are the batches (2 of at most 2 sentences).
    logdir = tmp_path / "profile"
    result = run_command(
        keras_tfm_command()
        + ["translate", "--model", str(version_dir), "--batch-size", "2"]
        + ["--profile", str(logdir)]
        + sentences
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert result.stdout.decode("utf-8").splitlines() == expected
    assert step_markers(read_trace(logdir), "translate") == [1, 2]

    # stdin mode, one line per sentence (an empty line stays a line), and a
    # model base path resolving to its highest version.
    result = run_command(
        keras_tfm_command()
        + ["translate", "--model", str(base / "numbers"), "--scores"],
        input=("\n".join(sentences + [""]) + "\n").encode("utf-8"),
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    lines = result.stdout.decode("utf-8").splitlines()
    assert len(lines) == 4
    assert [line.rsplit("\t", 1)[0] for line in lines[:3]] == expected
    assert lines[3] == "\t0.0000"  # the empty line translates to nothing
    assert all(float(line.rsplit("\t", 1)[1]) <= 0 for line in lines)

    # Asking for an existing version: exit code 2, the version untouched.
    result = run_command(
        keras_tfm_command()
        + [
            "export",
            str(trained.run_dir),
            "--name",
            "numbers",
            "--base-dir",
            str(base),
            "--version",
            "8",
        ]
    )
    assert result.returncode == 2
    assert "already exists" in result.stderr.decode()


def test_cli_errors_exit_2(tmp_path):
    missing = tmp_path / "nowhere" / "1"
    result = run_command(
        keras_tfm_command() + ["translate", "--model", str(missing), "x"]
    )
    assert result.returncode == 2
    # One message line, the last one (TensorFlow's C++ start-up logging may
    # precede it: importing keras_tfm imports TensorFlow).
    lines = result.stderr.decode().strip().splitlines()
    errors = [line for line in lines if line.startswith("keras-tfm: error:")]
    assert errors == lines[-1:]
    assert str(missing) in errors[0]
    assert result.stdout == b""

    result = run_command(
        keras_tfm_command()
        + [
            "export",
            str(tmp_path),
            "--name",
            "numbers",
            "--base-dir",
            str(tmp_path / "models"),
        ]
    )
    assert result.returncode == 2
    assert "model.keras" in result.stderr.decode()
    assert not (tmp_path / "models").exists()


# ------------------------------------------------------------ export options
def serve_batches(saved_model, batches, folder):
    """`{name: translations}` from the serving client (TF1 session)."""
    request_path, response_path = folder / "request.json", folder / "response.json"
    request_path.write_text(json.dumps({"batches": batches}), encoding="utf-8")
    result = run_command(
        [sys.executable, str(CLIENT), str(saved_model), str(request_path),
         str(response_path)]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    response = json.loads(response_path.read_text(encoding="utf-8"))
    return response, {name: texts(r) for name, r in response["results"].items()}


@pytest.mark.slow
def test_xla_export_translates_like_generate(trained, translator, tmp_path):
    path = export_saved_model(
        trained.model, trained.src, trained.tgt, base_dir=tmp_path, name="xla",
        jit_compile=True, **BEAM,
    )  # fmt: skip
    metadata = json.loads((path / "assets.extra" / "keras_tfm_export.json").read_text())
    assert metadata["jit_compile"] is True and metadata["dtype"] == "float32"
    numbers = sources(TEST_NUMBERS)
    response, served = serve_batches(
        path, {"all": numbers, "one": numbers[:1], "three": numbers[:3]}, tmp_path
    )
    # Still only core and TensorFlow Text ops: XLA compiles at run time.
    assert response["ops"]["unregistered"] == []
    assert not [op for op in response["ops"]["core"] if op.startswith("Xla")]
    expected = translator(numbers)
    assert served["all"] == expected
    assert served["one"] == expected[:1] and served["three"] == expected[:3]


@pytest.mark.slow
def test_bfloat16_export_mostly_agrees_with_float32(trained, translator, tmp_path):
    model = trained.model
    path = export_saved_model(
        model, trained.src, trained.tgt, base_dir=tmp_path, name="bf16",
        dtype="bfloat16", **BEAM,
    )  # fmt: skip
    metadata = json.loads((path / "assets.extra" / "keras_tfm_export.json").read_text())
    assert metadata["dtype"] == "bfloat16"
    # The weights are stored in bfloat16: half the bytes of float32.
    variables = path / "variables" / "variables.data-00000-of-00001"
    floats = sum(int(np.prod(w.shape)) for w in model.weights)
    assert variables.stat().st_size < 2.2 * floats + 10_000
    numbers = sources(list(range(0, 1000, 7)))
    _, served = serve_batches(path, {"all": numbers}, tmp_path)
    agreement = np.mean([a == b for a, b in zip(served["all"], translator(numbers))])
    assert agreement > 0.9
    # The model itself is untouched (the export works on a copy).
    assert model.get_layer("encoder").dtype_policy.name == "float32"


# ------------------------------------------------------- a run in Python
def test_load_run_translates_sentences_as_the_token_path_does(trained):
    """`keras_tfm.load_run(RUN_DIR).generate([...])`, as the README shows it,
    against tokenizing, decoding and detokenizing by hand (the run's
    `[evaluation]` decoding: the paper's beam search)."""
    import keras_tfm

    model = keras_tfm.load_run(trained.run_dir)
    assert isinstance(model, keras_tfm.Transformer)
    evaluation = json.loads((trained.run_dir / "config.json").read_text())["evaluation"]
    assert model.default_options == DecodingOptions(
        evaluation["method"],
        evaluation["beam_size"],
        evaluation["length_penalty"],
        evaluation["max_length"],
    )
    sentences = sources([54, 123, 403, 999, 7])
    translations = model.generate(sentences)

    width = max(len(trained.src.tokenize([s]).to_list()[0]) for s in sentences)
    ids = np.zeros((len(sentences), width), "int32")
    for row, sentence in enumerate(sentences):
        pieces = trained.src.tokenize([sentence]).to_list()[0]
        ids[row, : len(pieces)] = pieces
    tokens, _ = keras_tfm.generate(
        trained.model, ids, model.default_options, append_source_end=True
    )
    expected = [text.decode("utf-8") for text in trained.tgt.detokenize(tokens).numpy()]
    assert translations == expected
    assert translations[0] == "fifty-four"  # a number it was trained on

    greedy = model.generate(sentences, DecodingOptions("greedy"))
    tokens, _ = keras_tfm.generate(
        trained.model, ids, method="greedy", append_source_end=True
    )
    assert greedy == [
        text.decode("utf-8") for text in trained.tgt.detokenize(tokens).numpy()
    ]
    with pytest.raises(TypeError, match="list of sentences"):
        model.generate(sentences[0])
