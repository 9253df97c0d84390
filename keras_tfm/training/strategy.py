"""The `tf.distribute` strategies of the training job and how input is split
across them.

TensorFlow is imported by each function, not with this module, so that the
job's configuration can name the strategies without loading it.
"""

import os

# The names `make_strategy` takes.
STRATEGY_NAMES = ("auto", "one_device", "mirrored", "multi_worker")


def make_strategy(name="auto"):
    """Returns the `tf.distribute` strategy called `name`.

    - `auto`: MirroredStrategy over all GPUs when there are several, else the
      default (single-device) strategy.
    - `one_device`: the first GPU, or the CPU.
    - `mirrored`: MirroredStrategy over all GPUs, or over all logical CPU
      devices when there is no GPU (tests split the CPU into several).
    - `multi_worker`: MultiWorkerMirroredStrategy, cluster from `TF_CONFIG`.
    """
    import tensorflow as tf

    if name == "multi_worker":
        # Must come before anything initialises the TensorFlow runtime.
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multi_worker needs the TF_CONFIG variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    raise ValueError(
        f"unknown strategy {name!r}; choose {', '.join(STRATEGY_NAMES[:-1])} "
        f"or {STRATEGY_NAMES[-1]}"
    )


def is_multi_worker(strategy):
    """Whether `strategy` is a MultiWorkerMirroredStrategy."""
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def distribute_options(dataset, strategy, sharded=False):
    """How `dataset` is split across workers: by element (DATA), or not at
    all where the pipeline reads only this worker's share (`sharded`)."""
    import tensorflow as tf

    if is_multi_worker(strategy):
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF
            if sharded
            else tf.data.experimental.AutoShardPolicy.DATA
        )
        dataset = dataset.with_options(options)
    return dataset


def input_shard(strategy):
    """`(num_workers, index)` of this process's input pipeline: the chief
    (if any) first, then the workers, as MultiWorkerMirroredStrategy counts
    them; `(1, 0)` for a single host."""
    if not is_multi_worker(strategy):
        return 1, 0
    resolver = strategy.cluster_resolver
    cluster = resolver.cluster_spec().as_dict()
    chiefs, workers = len(cluster.get("chief", [])), len(cluster.get("worker", []))
    if resolver.task_type == "chief":
        return chiefs + workers, 0
    return chiefs + workers, chiefs + int(resolver.task_id)
