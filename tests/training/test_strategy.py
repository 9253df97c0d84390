"""`make_strategy`: the `tf.distribute` strategy of each name."""

import json
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf
from support.processes import child_env

from keras_tfm import training

CPU_0 = "/job:localhost/replica:0/task:0/device:CPU:0"
CPU_1 = "/job:localhost/replica:0/task:0/device:CPU:1"

pytestmark = pytest.mark.skipif(
    bool(tf.config.list_physical_devices("GPU")), reason="the CPU-only strategies"
)


def test_make_strategy_on_cpu(monkeypatch):
    # auto: one device, no GPUs to mirror over -> the default strategy.
    auto = training.make_strategy("auto")
    assert auto is tf.distribute.get_strategy()
    assert type(auto).__name__ == "_DefaultDistributionStrategy"
    assert auto.num_replicas_in_sync == 1
    one = training.make_strategy("one_device")
    assert type(one) is tf.distribute.OneDeviceStrategy
    assert one.num_replicas_in_sync == 1
    assert one.extended.worker_devices == (CPU_0,)
    # mirrored: one replica per logical CPU device (this process has one).
    assert len(tf.config.list_logical_devices("CPU")) == 1
    mirrored = training.make_strategy("mirrored")
    assert type(mirrored) is tf.distribute.MirroredStrategy
    assert mirrored.num_replicas_in_sync == 1
    assert mirrored.extended.worker_devices == (CPU_0,)
    with pytest.raises(ValueError) as error:
        training.make_strategy("nope")
    assert str(error.value) == (
        "unknown strategy 'nope'; choose auto, one_device, mirrored or multi_worker"
    )
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError) as error:
        training.make_strategy("multi_worker")
    assert str(error.value) == "--strategy multi_worker needs the TF_CONFIG variable"


MIRRORED_OVER_TWO_CPUS = textwrap.dedent(
    """
    import json

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    from keras_tfm import training

    strategy = training.make_strategy("mirrored")
    print(json.dumps({
        "mirrored": type(strategy) is tf.distribute.MirroredStrategy,
        "replicas": strategy.num_replicas_in_sync,
        "devices": list(strategy.extended.worker_devices),
    }))
    """
)


def test_mirrored_spreads_over_every_logical_cpu():
    """With the CPU split into two logical devices (as the distributed tests
    split it), `mirrored` holds one replica on each."""
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_OVER_TWO_CPUS],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    made = json.loads(result.stdout.strip().splitlines()[-1])
    assert made == {"mirrored": True, "replicas": 2, "devices": [CPU_0, CPU_1]}
