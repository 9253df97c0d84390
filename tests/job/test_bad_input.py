"""`keras-tfm train` on bad data, a bad config or a bad flag: exit status 2
and one line naming the problem, nothing trained."""

import re
import subprocess

import pytest
from support.cli_runs import (
    cli,
    our_stderr_lines,
)
from support.paths import TINY
from support.processes import child_env


def write_pairs(directory, split, de, en):
    (directory / f"{split}.de").write_bytes(de)
    (directory / f"{split}.en").write_bytes(en)


def good_data(directory):
    directory.mkdir()
    for split in ("train", "valid", "test"):
        write_pairs(directory, split, b"eins\nzwei\ndrei\n", b"one\ntwo\nthree\n")
    return directory


def bad_missing(d):
    (d / "valid.en").unlink()
    return f"missing file: {d}/valid.en"


def bad_line_counts(d):
    (d / "train.en").write_bytes(b"one\ntwo\n")
    return f"{d}/train.de has 3 lines but {d}/train.en has 2 lines"


def bad_empty(d):
    (d / "test.de").write_bytes(b"")
    return f"{d}/test.de: file is empty"


def bad_utf8(d):
    (d / "train.en").write_bytes(b"one\nt\xffo\nthree\n")
    return f"{d}/train.en, line 2: not valid UTF-8 (byte 0xff at column 2)"


DATA_CASES = {
    "missing_file": bad_missing,
    "line_counts": bad_line_counts,
    "empty_file": bad_empty,
    "not_utf8": bad_utf8,
}


def data_case(name, tmp):
    """`(expected message, CLI arguments)` of a run on spoilt data."""
    message = DATA_CASES[name](good_data(tmp / "data"))
    return message, (
        "--config",
        TINY,
        "--data-dir",
        tmp / "data",
        "--src",
        "de",
        "--tgt",
        "en",
        "--run-dir",
        tmp / "run",
        "--no-export",
    )


def config_with(old, new):
    def make(tmp):
        path = tmp / "bad.toml"
        text = TINY.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
        return path

    return make


def tiny_line(text):
    return TINY.read_text().splitlines().index(text) + 1


def at(text):
    """`{path}, line N` of the first line of `text` in the bad config."""
    return "{path}, line {line:" + text + "}"


CONFIG_CASES = {
    "unknown_key": (
        config_with("epochs = 4", "epoch = 3"),
        at("epoch = 3") + ": [training] epoch is unknown; did you mean 'epochs'?",
    ),
    "unknown_section": (
        config_with("[training]", "[trainig]"),
        at("[trainig]") + ": section [trainig] is unknown; did you mean [training]?",
    ),
    "unknown_top_level": (
        config_with('name = "tiny"', 'nmae = "tiny"'),
        at('nmae = "tiny"') + ": nmae is unknown; did you mean 'name'?",
    ),
    "unknown_field": (
        config_with("dropout = 0.0", "dropout = 0.0\ncolour = 'red'"),
        at("colour = 'red'") + ": [model] colour is unknown; valid: 'preset', "
        "'d_model', 'num_heads', 'd_ff', 'num_encoder_layers', 'num_decoder_layers', "
        "'dropout', 'attention_dropout', 'activation', 'max_length', "
        "'share_embeddings', 'tie_output', 'pre_norm', 'layer_norm_epsilon'",
    ),
    "dropout": (
        config_with("dropout = 0.0", "dropout = 1.5"),
        at("dropout = 1.5") + ": [model] dropout must be in [0, 1), got 1.5",
    ),
    "wrong_type": (
        config_with("epochs = 4", 'epochs = "four"'),
        at('epochs = "four"') + ": [training] epochs must be an integer, got 'four'",
    ),
    "time_limit": (
        config_with("epochs = 4", "epochs = 4\ntime_limit_minutes = -1"),
        at("time_limit_minutes = -1")
        + ": [training] time_limit_minutes must be > 0, got -1.0",
    ),
    "time_limit_type": (
        config_with("epochs = 4", "epochs = 4\ntime_limit_minutes = true"),
        at("time_limit_minutes = true")
        + ": [training] time_limit_minutes must be a number, got True",
    ),
    "evaluation_method": (
        config_with('method = "greedy"', 'method = "greedy"\ncompare = ["topk"]'),
        at('compare = ["topk"]')
        + ": [evaluation] compare must be one of 'beam', 'greedy', got 'topk'",
    ),
    "evaluation_longer_than_model": (
        config_with(
            "max_length = 24\nbatch_size = 64", "max_length = 48\nbatch_size = 64"
        ),
        at("max_length = 48")
        + ": [evaluation] max_length is 48, more than [model] max_length 24",
    ),
    "shared_embeddings_separate_vocabularies": (
        config_with("dropout = 0.0", "dropout = 0.0\nshare_embeddings = true"),
        at("share_embeddings = true") + ": [model] share_embeddings = true needs one "
        "vocabulary for both languages: set [tokenizer] shared = true",
    ),
    "batch_tokens_below_max_length": (
        config_with("batch_size = 32", "batch_tokens = 16"),
        at("batch_tokens = 16") + ": [training] batch_tokens is 16, less than "
        "[model] max_length 24: the longest sentences would fit in no batch",
    ),
    "data_dir_missing": (
        config_with('task = "numbers"', 'task = "files"'),
        at('task = "files"') + ": [data] task = 'files' needs data_dir: set it or "
        "pass --data-dir DIR",
    ),
    "malformed": (
        config_with("d_model = 32", "d_model = = 32"),
        f"{{path}}: Invalid value (at line {tiny_line('d_model = 32')}, column 11)",
    ),
    "missing": (
        lambda tmp: tmp / "no-such.toml",
        "{path}: cannot read config (No such file or directory)",
    ),
}


def config_case(name, tmp):
    make, template = CONFIG_CASES[name]
    path = make(tmp)
    lines = path.read_text().splitlines() if path.exists() else []
    message = re.sub(
        r"\{line:(.*?)\}", lambda m: str(lines.index(m.group(1)) + 1), template
    ).replace("{path}", str(path))
    return message, (
        "--config",
        path,
        "--run-dir",
        tmp / "run",
        "--no-export",
    )


def flag_case(name, tmp):
    return "--epochs 0: [training] epochs must be >= 1, got 0", (
        "--config", TINY, "--epochs", 0, "--run-dir", tmp / "run", "--no-export",
    )  # fmt: skip


FLAG_CASES = {"epochs_flag": flag_case}


def bad_case(name, tmp):
    if name in FLAG_CASES:
        return flag_case(name, tmp)
    return (data_case if name in DATA_CASES else config_case)(name, tmp)


@pytest.mark.parametrize("case", [*DATA_CASES, *CONFIG_CASES, *FLAG_CASES])
def test_bad_input_returns_2_with_one_line(case, tmp_path, capsys):
    from keras_tfm.cli import main

    message, args = bad_case(case, tmp_path)
    assert main(["train", *map(str, args)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"keras-tfm: error: {message}\n"
    assert "Epoch 1/" not in captured.out
    assert not (tmp_path / "run" / "metrics.json").exists()
    if case not in DATA_CASES:
        # Found before any data was read or model built.
        assert not (tmp_path / "run").exists()


def test_bad_input_exit_status_without_traceback(tmp_path):
    """The real process: exit status 2, one line of our own on stderr."""
    runs = {}
    for case in ("not_utf8", "unknown_field"):
        (tmp_path / case).mkdir()
        message, args = bad_case(case, tmp_path / case)
        process = subprocess.Popen(
            cli(*args),
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        runs[case] = message, process
    try:
        for message, process in runs.values():
            stdout, stderr = process.communicate(timeout=240)
            assert process.returncode == 2, stdout[-2000:] + stderr[-2000:]
            assert "Traceback" not in stderr
            assert our_stderr_lines(stderr) == [f"keras-tfm: error: {message}"]
    finally:
        for _, process in runs.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def test_bleu_watched_on_a_valid_split_of_blank_sentences_returns_2(
    task, tmp_path, capsys
):
    """Blank valid sources leave nothing to score: early stopping or keeping
    the best epoch by validation BLEU is refused before training."""
    import shutil

    from keras_tfm.cli import main

    data_dir = task[0]
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "test"):
        for lang in ("de", "en"):
            shutil.copy(data_dir / f"{split}.{lang}", data / f"{split}.{lang}")
    write_pairs(data, "valid", b"  \n \n\t\n", b"one\ntwo\nthree\n")
    config = tmp_path / "bleu.toml"
    config.write_text(
        TINY.read_text().replace(
            "[training]",
            '[training]\nkeep_best_checkpoint = true\nearly_stopping_metric = "bleu"',
        )
    )
    args = ["train", "--config", config, "--data-dir", data, "--max-steps", 2]
    args += ["--run-dir", tmp_path / "run", "--no-export"]
    assert main(list(map(str, args))) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        f'keras-tfm: error: {config}: [training] early_stopping_metric = "bleu" '
        "needs validation BLEU, but the valid split has no sentences\n"
    )
    assert "Epoch 1/" not in captured.out
    assert not (tmp_path / "run" / "metrics.json").exists()
