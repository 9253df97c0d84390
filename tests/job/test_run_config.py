"""The typed training config: defaults, resolution, round trips and errors."""

import dataclasses
import json
import tomllib

import pytest
from support.paths import ROOT

from keras_tfm.decoding.options import DecodingOptions
from keras_tfm.errors import ConfigError
from keras_tfm.job.run_config import (
    RunConfig,
    TrainingConfig,
    load_run_config,
)
from keras_tfm.models.transformer_config import PRESETS, TransformerConfig

CONFIGS = sorted((ROOT / "training" / "configs").glob("*.toml"))
DATA_DIR = {"data.data_dir": ("--data-dir", "/data")}


def write(tmp_path, text):
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_empty_file_is_all_defaults(tmp_path):
    config = load_run_config(write(tmp_path, ""))
    assert config.name == "run"  # the file's stem
    assert config.training == TrainingConfig(batch_size=64)
    assert (config.training.epochs, config.training.warmup_steps) == (10, 4000)
    # Decoding defaults are DecodingOptions', lengths the model's.
    decoding = DecodingOptions()
    for section in (config.evaluation, config.export):
        assert section.method == decoding.method == "beam"
        assert section.beam_size == decoding.beam_size == 4
        assert section.length_penalty == decoding.length_penalty == 0.6
        assert section.max_length == config.model.max_length == 256
    assert config.export.source_max_length == 256
    # The model section is TransformerConfig's defaults.
    model = config.model.transformer_config(100, 100)
    assert model == TransformerConfig(src_vocab_size=100, tgt_vocab_size=100)


def test_presets_fill_unset_model_fields(tmp_path):
    config = load_run_config(
        write(
            tmp_path,
            '[model]\npreset = "big"\ndropout = 0.2\n[tokenizer]\nshared = true',
        )
    )
    model = config.model.transformer_config(50, 50)
    for key, value in PRESETS["big"].items():
        expected = 0.2 if key == "dropout" else value
        assert getattr(model, key) == expected, key


@pytest.mark.parametrize(
    "path", [None, *CONFIGS], ids=lambda p: getattr(p, "name", "built-in")
)
def test_printed_toml_and_json_round_trip(path):
    config = load_run_config(path, overrides=DATA_DIR if path else None)
    again = RunConfig.from_dict(tomllib.loads(config.to_toml()), source="printed")
    assert again == config
    from_json = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert from_json == config
    # Unset keys are comments, never values TOML cannot hold.
    assert "# time_limit_minutes is not set" in config.to_toml() or (
        config.training.time_limit_minutes is not None
    )


def test_command_line_values_replace_the_file_and_are_named_in_errors(tmp_path):
    path = write(tmp_path, "[training]\nepochs = 5\n")
    config = load_run_config(path, overrides={"training.epochs": ("--epochs", 2)})
    assert config.training.epochs == 2
    # A None value (flag not given) leaves the file's.
    assert (
        load_run_config(path, {"training.epochs": ("--epochs", None)}).training.epochs
        == 5
    )
    with pytest.raises(ConfigError) as error:
        load_run_config(path, overrides={"training.epochs": ("--epochs", 0)})
    assert str(error.value) == "--epochs 0: [training] epochs must be >= 1, got 0"


def test_a_cooldown_longer_than_the_run_takes_the_whole_run():
    """`--max-steps 20` on a config that cools down over 1,000 steps (a
    smoke test of a real config) is accepted as written; the job cools down
    over all 20 steps, and says so."""
    from keras_tfm.job.train import plan_cooldown

    path = ROOT / "training" / "configs" / "multi30k_de_en.toml"
    config = load_run_config(
        path, overrides={**DATA_DIR, "training.max_steps": ("--max-steps", 20)}
    )
    assert (config.training.max_steps, config.training.cooldown_steps) == (20, 1000)
    assert plan_cooldown(1000, 20) == (
        20,
        "cooldown_steps (1000) is more than the run's 20 optimizer steps: "
        "the learning rate cools down to zero over all 20",
    )
    for cooldown in (10, 20):
        assert plan_cooldown(cooldown, 20) == (
            cooldown,
            f"the learning rate cools down to zero over the last {cooldown} "
            "of 20 optimizer steps",
        )


def test_updated_checks_again():
    config = load_run_config(None)
    longer = config.updated({"model.max_length": 64})
    assert longer.model.max_length == 64 and config.model.max_length == 32
    with pytest.raises(ConfigError) as error:
        config.updated({"model.d_model": 129})
    assert str(error.value) == (
        "model.d_model 129: [model] d_model (129) is not divisible by num_heads (4)"
    )


MISTAKES = [
    (
        "[training]\nepoch = 3",
        "line 2: [training] epoch is unknown; did you mean 'epochs'?",
    ),
    (
        "[trainig]\nepochs = 3",
        "line 1: section [trainig] is unknown; did you mean [training]?",
    ),
    (
        "[data]\ntask = 'files'",
        "line 2: [data] task = 'files' needs data_dir: set it or pass --data-dir DIR",
    ),
    (
        "[model]\nmax_length = 16\n[evaluation]\nmax_length = 17",
        "line 4: [evaluation] max_length is 17, more than [model] max_length 16",
    ),
    (
        "[model]\nmax_length = 16\n[export]\nsource_max_length = 99",
        "line 4: [export] source_max_length is 99, more than [model] max_length 16",
    ),
    (
        "[model]\nshare_embeddings = true",
        "line 2: [model] share_embeddings = true needs one vocabulary for both "
        "languages: set [tokenizer] shared = true",
    ),
    (
        "[tokenizer]\nshared = true\nsrc_vocab_size = 800\ntgt_vocab_size = 900",
        "line 4: [tokenizer] tgt_vocab_size (900) differs from src_vocab_size "
        "(800), but shared = true learns one vocabulary",
    ),
    (
        "[tokenizer]\nsrc_vocab_size = 4",
        "line 2: [tokenizer] src_vocab_size must be >= 5, got 4",
    ),
    (
        "[tokenizer]\nsampling_alpha = 1.0",
        "line 2: [tokenizer] sampling_alpha must be in [0.0, 1.0), got 1.0",
    ),
    (
        "[tokenizer]\nsampling_nbest_size = 1",
        "line 2: [tokenizer] sampling_nbest_size must be -1 (all) or in [2, 512], "
        "got 1",
    ),
    (
        "[tokenizer]\nsampling_nbest_size = 513",
        "line 2: [tokenizer] sampling_nbest_size must be -1 (all) or in [2, 512], "
        "got 513",
    ),
    (
        "[training]\nbatch_size = 8\nbatch_tokens = 4000",
        "line 3: [training] batch_tokens and batch_size are both set; set one",
    ),
    (
        "[training]\nlabel_smoothing = 1.0",
        "line 2: [training] label_smoothing must be in [0, 1), got 1.0",
    ),
    (
        "[training]\nmixed_precision = 1",
        "line 2: [training] mixed_precision must be true or false, got 1",
    ),
    (
        "[evaluation]\nmethod = 'sample'",
        "line 2: [evaluation] method must be one of ('beam', 'greedy') here, "
        "got 'sample'",
    ),
    (
        "[export]\nmethod = 'topk'",
        "line 2: [export] method is unknown: 'topk'; choose from "
        "('beam', 'greedy', 'sample')",
    ),
    (
        "[export]\nbeam_size = 0",
        "line 2: [export] beam_size must be an integer >= 1, got 0",
    ),
    (
        "[model]\npreset = 'huge'",
        "line 2: [model] preset is unknown: 'huge'; choose from "
        "['base', 'big', 'tiny']",
    ),
    (
        "[model]\nd_model = 129",
        "line 2: [model] d_model (129) is not divisible by num_heads (8)",
    ),
    (
        "[data]\nmax_number = 100\nvalid_size = 60\ntest_size = 60",
        "line 2: [data] max_number (100) leaves no training numbers after "
        "valid_size + test_size = 120",
    ),
    (
        "[training]\ncooldown_steps = -1",
        "line 2: [training] cooldown_steps must be >= 0, got -1",
    ),
    ("name = 3", "line 1: name must be a plain folder name, got 3"),
    ('name = "../out"', "line 1: name must be a plain folder name, got '../out'"),
    ("model = 3", "line 1: model must be a table [model]"),
]


@pytest.mark.parametrize("text, message", MISTAKES)
def test_mistakes_name_the_file_line_section_and_key(tmp_path, text, message):
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as error:
        load_run_config(path)
    assert str(error.value) == f"{path}, {message}"


def test_sections_are_frozen():
    config = load_run_config(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.training.epochs = 3


@pytest.mark.parametrize(
    "training, problem",
    [
        ("time_limit_minutes = 5", "time_limit_minutes is not supported"),
        ("cooldown_steps = 10", "cooldown_steps needs steps_per_epoch or max_steps"),
        (
            'early_stopping_metric = "bleu"\nearly_stopping_patience = 2',
            'early_stopping_metric = "bleu" with early_stopping_patience is not '
            "supported",
        ),
    ],
)
def test_multi_worker_rules_out_what_each_worker_would_decide_alone(
    tmp_path, training, problem
):
    from keras_tfm.job.train import check_strategy_settings

    path = write(tmp_path, f"[training]\n{training}\n")
    config = load_run_config(path)
    check_strategy_settings(config, "auto")  # one host: allowed
    with pytest.raises(ConfigError) as error:
        check_strategy_settings(config, "multi_worker")
    assert str(error.value) == (
        f"{path}: [training] {problem} with multi-worker training"
    )
    # A cooldown on a run of fixed length is the same on every worker.
    if "cooldown" in training:
        for fixed in ("steps_per_epoch = 20", "max_steps = 100"):
            fixed_path = write(tmp_path, f"[training]\n{training}\n{fixed}\n")
            check_strategy_settings(load_run_config(fixed_path), "multi_worker")


def test_multi30k_config_builds_the_reported_model_under_10m_parameters():
    from keras_tfm.models.transformer import build_transformer

    config = load_run_config(
        ROOT / "training" / "configs" / "multi30k_de_en.toml",
        overrides={"data.data_dir": ("--data-dir", "multi30k")},
    )
    vocab = config.tokenizer.src_vocab_size
    assert config.tokenizer.shared and vocab == 8000
    model = build_transformer(config.model.transformer_config(vocab, vocab))
    # The figure in benchmarks/README.md; the config's aim is under 10M.
    assert model.count_params() == 7_577_600 < 10_000_000
    # One embedding matrix serves both sides and the output projection.
    d_model = config.model.d_model
    embeddings = [w for w in model.weights if tuple(w.shape) == (vocab, d_model)]
    assert len(embeddings) == 1
    assert [o.method for o in config.evaluation.methods()] == ["beam", "greedy"]
    assert config.training.time_limit_minutes < 45
