"""`TransformerSchedule`: the paper's learning rate (equation 3), its
cooldown, and the optimizer it drives."""

import json

import keras
import numpy as np
import pytest
from support.schedules import paper_lr

from keras_tfm import training


@pytest.mark.parametrize("d_model,warmup,scale", [(512, 4000, 1.0), (32, 20, 2.5)])
def test_schedule_matches_paper_formula(d_model, warmup, scale):
    schedule = training.TransformerSchedule(d_model, warmup, scale)
    iterations = np.concatenate(
        [np.arange(0, 3 * warmup), np.array([10 * warmup, 100 * warmup, 10**6])]
    )
    got = keras.ops.convert_to_numpy(schedule(iterations))
    expected = paper_lr(iterations, d_model, warmup, scale)
    np.testing.assert_allclose(got, expected, rtol=2e-6)
    # Linear warmup up to step == warmup_steps (iteration warmup - 1), then decay.
    assert int(np.argmax(got)) == warmup - 1
    np.testing.assert_allclose(got.max(), scale * (d_model * warmup) ** -0.5, rtol=2e-6)
    assert np.all(np.diff(got[:warmup]) > 0)
    assert np.all(np.diff(got[warmup - 1 :]) < 0)
    # Step 1 of the warmup: scale * d^-0.5 * warmup^-1.5.
    np.testing.assert_allclose(got[0], scale * d_model**-0.5 * warmup**-1.5, rtol=2e-6)


def test_schedule_cooldown_takes_the_rate_linearly_to_zero():
    total, cooldown = 100, 30
    schedule = training.TransformerSchedule(
        64, warmup_steps=10, scale=0.5, total_steps=total, cooldown_steps=cooldown
    )
    iterations = np.arange(0, 120)
    got = keras.ops.convert_to_numpy(schedule(iterations)).astype(np.float64)
    step = iterations + 1.0
    factor = np.clip((total + 1.0 - step) / cooldown, 0.0, 1.0)
    np.testing.assert_allclose(
        got, paper_lr(iterations, 64, 10, 0.5) * factor, rtol=2e-6, atol=1e-12
    )
    plain = paper_lr(iterations, 64, 10, 0.5)
    # Untouched up to step T - C + 1 (iteration 70), 1/C of the curve at the
    # last step (iteration 99), zero after it.
    np.testing.assert_allclose(got[:71], plain[:71], rtol=2e-6)
    assert got[71] < plain[71]
    np.testing.assert_allclose(got[99], plain[99] / cooldown, rtol=2e-6)
    assert np.all(got[100:] == 0.0)
    assert np.all(np.diff(got[70:101]) < 0)


def test_schedule_drives_the_optimizer_learning_rate():
    optimizer = training.make_optimizer(64, warmup_steps=100, scale=0.5)
    assert optimizer.beta_1 == 0.9 and optimizer.beta_2 == 0.98
    assert optimizer.epsilon == 1e-9
    for iteration in (0, 1, 57, 99, 100, 5000):
        optimizer.iterations.assign(iteration)
        got = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        np.testing.assert_allclose(got, paper_lr(iteration, 64, 100, 0.5), rtol=2e-6)


def test_schedule_config_round_trip():
    schedule = training.TransformerSchedule(
        128, warmup_steps=400, scale=0.7, total_steps=1900, cooldown_steps=500
    )
    config = schedule.get_config()
    assert config == {
        "d_model": 128,
        "warmup_steps": 400,
        "scale": 0.7,
        "total_steps": 1900,
        "cooldown_steps": 500,
    }
    rebuilt = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(keras.saving.serialize_keras_object(schedule)))
    )
    assert type(rebuilt) is training.TransformerSchedule
    assert rebuilt.get_config() == config
    steps = np.arange(0, 2000, 37)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(rebuilt(steps)),
        keras.ops.convert_to_numpy(schedule(steps)),
    )
    # Inside a serialized optimizer as well.
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    clone = keras.optimizers.Adam.from_config(optimizer.get_config())
    assert isinstance(clone._learning_rate, training.TransformerSchedule)
    assert clone._learning_rate.get_config() == config


@pytest.mark.parametrize(
    "args",
    [
        (0, 10, 1.0),
        (16, 0, 1.0),
        (16, 10, 0.0),
        (16, 10, 1.0, None, 5),  # a cooldown needs the run's length
        (16, 10, 1.0, 4, 5),  # longer than the run
        (16, 10, 1.0, 100, -1),
    ],
)
def test_schedule_rejects_bad_arguments(args):
    with pytest.raises(ValueError, match="TransformerSchedule"):
        training.TransformerSchedule(*args)
