"""Child processes of the tests: their environment and free local ports."""

import os
import socket

from support.paths import ROOT


def child_env(backend=None, **variables):
    """`os.environ` for a child process (a `keras-tfm` command, a script).

    keras_tfm imported from this checkout, TensorFlow's C++ logging quiet,
    output unbuffered and UTF-8, no `TF_CONFIG` of this process. The Keras
    backend is `backend` (None: Keras' default, TensorFlow, whatever this
    process runs under). `variables` are set last (e.g. `TF_CONFIG`).
    """
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
        ),
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONUNBUFFERED="1",
        PYTHONIOENCODING="utf-8",
    )
    env.pop("TF_CONFIG", None)
    env.pop("KERAS_BACKEND", None)
    if backend is not None:
        env["KERAS_BACKEND"] = backend
    env.update(variables)
    return env


def free_ports(count):
    """`count` distinct TCP ports on 127.0.0.1 that were free just now (all
    bound at once, so none is given twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port():
    return free_ports(1)[0]
