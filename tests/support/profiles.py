"""Profiler traces read back as TensorBoard's Profile dashboard reads them."""

import collections


def read_trace(logdir):
    """The `XSpace` of the one trace under `logdir/plugins/profile`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    traces = sorted((logdir / "plugins" / "profile").glob("*/*"))
    assert [p.name.endswith(".xplane.pb") for p in traces] == [True], traces
    space = xplane_pb2.XSpace()
    space.ParseFromString(traces[0].read_bytes())
    return space


def _events(space):
    """`(plane, event, name)` of every event."""
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                yield plane, event, plane.event_metadata[event.metadata_id].name


def event_counts(space):
    """`Counter` of the trace's event names."""
    return collections.Counter(name for _, _, name in _events(space))


def step_markers(space, name):
    """The sorted step numbers of the step-marker events `name` (those with
    `_r = 1`, which the Profile overview counts as steps)."""
    steps = []
    for plane, event, event_name in _events(space):
        if event_name != name:
            continue
        stats = {plane.stat_metadata[s.metadata_id].name: s for s in event.stats}
        assert stats["_r"].int64_value == 1
        steps.append(stats["step_num"].int64_value)
    return sorted(steps)
