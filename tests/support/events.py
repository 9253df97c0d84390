"""Scalars read back from TensorBoard event files."""

from pathlib import Path


def _tensor_events(path):
    from tensorboard.backend.event_processing import event_accumulator

    return event_accumulator.EventAccumulator(
        str(path), size_guidance={event_accumulator.TENSORS: 0}
    ).Reload()


def scalar_events_file(path, tag):
    """`{step: value}` of a scalar tag in one event file."""
    import tensorflow as tf

    accumulator = _tensor_events(path)
    if tag not in accumulator.Tags()["tensors"]:
        return {}
    return {
        e.step: float(tf.make_ndarray(e.tensor_proto)) for e in accumulator.Tensors(tag)
    }


def scalar_events(directory, tag):
    """`{step: value}` of a scalar tag in every event file of `directory`."""
    values = {}
    for path in sorted(Path(directory).glob("events.out.tfevents.*")):
        values.update(scalar_events_file(path, tag))
    return values


def all_scalar_events(directory):
    """`{tag: {step: value}}` of every scalar in `directory`'s event files."""
    import tensorflow as tf

    values = {}
    for path in sorted(Path(directory).glob("events.out.tfevents.*")):
        accumulator = _tensor_events(path)
        for tag in accumulator.Tags()["tensors"]:
            for event in accumulator.Tensors(tag):
                value = float(tf.make_ndarray(event.tensor_proto))
                values.setdefault(tag, {})[event.step] = value
    return values
