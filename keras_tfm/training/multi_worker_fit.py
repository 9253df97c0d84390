"""Patches to Keras' private TensorFlow trainer that let `model.fit` run
under MultiWorkerMirroredStrategy (keras-team/keras#20585).

Keras 3's TensorFlow trainer fails there in two places:

1. its lazy build turns the first distributed batch into symbolic inputs,
   which a `PerReplica` value cannot become. `prepare_for_fit` builds the
   model, optimizer, compiled loss and metrics beforehand, from a plain
   local batch, which leaves that step nothing to do, so it is skipped;
2. it averages each step's scalar logs with `strategy.reduce("MEAN",
   value, axis=0)`, which rejects scalars. Each log is returned as a
   length-1 vector instead, which that reduction averages over replicas to
   the same scalar the single-host path computes.

Both rely on Keras internals (`Trainer._maybe_symbolic_build`, the shape of
a step's logs). Once keras-team/keras#20585 is fixed in the Keras this
package requires, this module and its one call in `prepare_for_fit` can be
deleted.
"""

import tensorflow as tf


def patch_for_multi_worker(model, train_step, test_step):
    """Skips `model`'s symbolic build (1 above) and returns `(train_step,
    test_step)` with vector logs (2 above)."""
    skip_symbolic_build(model)
    return with_vector_logs(train_step), with_vector_logs(test_step)


def skip_symbolic_build(model):
    """Makes `fit` leave out its build from the first (distributed) batch;
    everything it would build must exist already."""
    model._maybe_symbolic_build = lambda *args, **kwargs: None


def with_vector_logs(step):
    """`step`, returning each of its scalar logs as a length-1 vector."""

    def vector_logs(data):
        return {key: tf.reshape(value, (1,)) for key, value in step(data).items()}

    return vector_logs
