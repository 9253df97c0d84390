"""Validation scores each epoch and the best epoch kept: the callbacks on
their own, against sacreBLEU and by hand (a whole run checks them in
tests/job/test_trained_run.py)."""

import json

import keras
import numpy as np
import pytest

from keras_tfm.job.validation_scores import (
    KeepBest,
    ValidationScores,
    restore_best,
    valid_subset,
)


def test_valid_subset_is_a_seeded_sample_in_file_order():
    sources = [f"s{i}" for i in range(50)] + ["  "]
    references = [f"r{i}" for i in range(50)] + ["r-empty"]
    src, ref = valid_subset(sources, references, 10, seed=3)
    assert len(src) == 10 and len(set(src)) == 10
    positions = [int(s[1:]) for s in src]
    assert positions == sorted(positions)
    # Pairs stay pairs.
    assert ref == [f"r{i}" for i in positions]
    assert valid_subset(sources, references, 10, seed=3) == (src, ref)
    assert valid_subset(sources, references, 10, seed=4)[0] != src
    # All of them (without the empty source) when asked for as many or more.
    everything = valid_subset(sources, references, 1000, seed=3)
    assert everything == (sources[:50], references[:50])


def test_validation_scores_are_sacrebleu_and_exact_match_of_the_translations():
    import sacrebleu

    sources = ["eins", "zwei", "drei", "vier"]
    references = [
        "a man rides a red bike down the street .",
        "two dogs play in the snow .",
        "a woman is reading a book in the park .",
        "children are running on the beach .",
    ]
    translations = [
        "a man rides a red bike down the street .",
        "two dogs are playing in snow .",
        "a woman is reading a book in the park .",
        "kids run on a beach .",
    ]
    asked = []

    def translate(batch):
        asked.append(list(batch))
        return translations

    callback = ValidationScores(translate, sources, references, "en")
    logs = {"val_loss": 1.5}
    callback.on_epoch_end(0, logs)
    assert asked == [sources]
    assert logs["val_bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(translations, [references]).score, abs=0.006
    )
    assert 0 < logs["val_bleu"] < 100
    assert logs["val_exact_match"] == 0.5
    assert logs["val_scoring_seconds"] >= 0
    assert logs["val_loss"] == 1.5


def _model(value):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.set_weights([np.full((2, 1), value, "float32"), np.zeros(1, "float32")])
    return model


def test_keep_best_saves_the_best_epoch_and_remembers_it_across_a_resume(tmp_path):
    path = tmp_path / "checkpoints" / "best.keras"

    def epochs(callback, model, values, first_epoch=0):
        callback.set_model(model)
        callback.on_train_begin()
        for epoch, value in enumerate(values, start=first_epoch):
            # Each epoch's weights carry the epoch's number.
            model.set_weights([np.full((2, 1), epoch + 1.0, "float32"), np.zeros(1)])
            callback.on_epoch_end(epoch, {"val_bleu": value, "val_loss": 9.0})

    def kept_weight():
        return keras.saving.load_model(path).get_weights()[0][0, 0]

    callback = KeepBest(path, "bleu")
    epochs(callback, _model(0.0), [10.0, 30.0, 20.0])
    assert (callback.best_epoch, callback.best_value) == (2, 30.0)
    assert kept_weight() == 2.0
    assert json.loads(path.with_suffix(".json").read_text()) == {
        "epoch": 2,
        "monitor": "val_bleu",
        "value": 30.0,
    }
    # A resumed run: epoch 4 is worse than epoch 2, epoch 5 better.
    resumed = KeepBest(path, "bleu", resumed_epoch=3)
    epochs(resumed, _model(0.0), [25.0], first_epoch=3)
    assert kept_weight() == 2.0 and resumed.best_epoch == 2
    epochs(resumed, _model(0.0), [31.0], first_epoch=4)
    assert kept_weight() == 5.0 and resumed.best_epoch == 5
    assert not list(path.parent.glob(".*"))  # no temporary file left

    # The run's model becomes the kept one.
    final = _model(7.0)
    assert restore_best(final, path) == {
        "epoch": 5,
        "monitor": "val_bleu",
        "value": 31.0,
    }
    assert final.get_weights()[0][0, 0] == 5.0

    # A resume from a backup taken before the kept epoch (5): that epoch is
    # trained again, so its record no longer holds.
    early = KeepBest(path, "bleu", resumed_epoch=4)
    early.set_model(_model(0.0))
    early.on_train_begin()
    assert early.best_epoch is None and not path.exists()
    epochs(resumed, _model(0.0), [31.0], first_epoch=4)  # kept again
    assert kept_weight() == 5.0

    # A new run in the same place starts afresh: what was kept is removed,
    # and a first epoch worse than the old best is kept.
    fresh = KeepBest(path, "bleu")
    fresh.set_model(_model(0.0))
    fresh.on_train_begin()
    assert not path.exists() and restore_best(_model(1.0), path) is None
    epochs(fresh, _model(0.0), [5.0])
    assert fresh.best_epoch == 1 and kept_weight() == 1.0

    # The loss: lower is better.
    loss_path = tmp_path / "loss" / "best.keras"
    by_loss = KeepBest(loss_path, "loss")
    model = _model(0.0)
    by_loss.set_model(model)
    by_loss.on_train_begin()
    for epoch, loss in enumerate([3.0, 2.0, 2.5]):
        by_loss.on_epoch_end(epoch, {"val_loss": loss})
    assert (by_loss.best_epoch, by_loss.best_value) == (2, 2.0)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"training": {"early_stopping_metric": "accuracy"}}, "early_stopping_metric"),
        (
            {
                "training": {
                    "early_stopping_metric": "bleu",
                    "keep_best_checkpoint": True,
                },
                "evaluation": {"valid_sentences": 0},
            },
            "early_stopping_metric",
        ),
        (
            {"training": {"keep_best_checkpoint": True, "average_checkpoints": 3}},
            "keep_best_checkpoint",
        ),
        ({"training": {"early_stopping_metric": "bleu"}}, "early_stopping_metric"),
        ({"training": {"choose_average": True}}, "choose_average"),
        (
            {
                "training": {"choose_average": True, "average_checkpoints": 3},
                "evaluation": {"valid_sentences": 0},
            },
            "choose_average",
        ),
        ({"evaluation": {"valid_method": "sample"}}, "valid_method"),
        ({"evaluation": {"valid_sentences": -1}}, "valid_sentences"),
    ],
)
def test_config_rejects_inconsistent_validation_settings(changes, field):
    from keras_tfm.errors import ConfigError
    from keras_tfm.job.run_config import RunConfig

    with pytest.raises(ConfigError, match=field):
        RunConfig.from_dict(changes, source="run.toml")
